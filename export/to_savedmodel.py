"""Export a trained MAMSF model to savedmodel: `python export/to_savedmodel.py MODEL.keras --out DIR [options]`.

A thin entry point over `mamsf export --format savedmodel` (same options; `--help` lists them).
"""

import sys

from keras_mamsf.cli.main import main
from keras_mamsf.inference.formats import SAVEDMODEL

if __name__ == "__main__":
    sys.exit(main(["export", "--format", SAVEDMODEL.name, *sys.argv[1:]], prog="export/to_savedmodel.py"))
