"""Export a trained MAMSF model to tflite: `python export/to_tflite.py MODEL.keras --out DIR [options]`.

A thin entry point over `mamsf export --format tflite` (same options; `--help` lists them).
"""

import sys

from keras_mamsf.cli.main import export_script
from keras_mamsf.inference.formats import TFLITE

if __name__ == "__main__":
    sys.exit(export_script(TFLITE.name))
