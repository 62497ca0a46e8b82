"""Export a trained MAMSF model to savedmodel: `python export/to_savedmodel.py MODEL.keras --out DIR [options]`.

A thin entry point over `mamsf export --format savedmodel` (same options; `--help` lists them).
"""

import sys

from keras_mamsf.cli.main import export_script
from keras_mamsf.inference.formats import SAVEDMODEL

if __name__ == "__main__":
    sys.exit(export_script(SAVEDMODEL.name))
