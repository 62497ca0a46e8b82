"""Export a trained MAMSF model to onnx: `python export/to_onnx.py MODEL.keras --out DIR [options]`.

A thin entry point over `mamsf export --format onnx` (same options; `--help` lists them).
"""

import sys

from keras_mamsf.cli.main import export_script
from keras_mamsf.inference.formats import ONNX

if __name__ == "__main__":
    sys.exit(export_script(ONNX.name))
