"""The ChestX-ray14 recipe: MAMSF (anchor="branch") and its anchor=None baseline on the official
split, evaluated and compared with patient-level confidence intervals.

    python examples/train_chestxray14.py --data data/ChestX-ray14 [--shards data/shards] [--size 224|512]
        [--weights efficientnetb0_notop.h5] [--out runs/cxr14]

Nothing is downloaded: ChestX-ray14 is NIH's manual download, and ImageNet weights are used only when you
pass a local file. Each run is a `mamsf train` run folder (resumable: run the same command again after a
crash); the comparison goes to OUT/compare_branch_vs_none/.
"""

import argparse
import os
import sys

from keras_mamsf.cli.main import main as mamsf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the ChestX-ray14 root as NIH ships it")
    parser.add_argument("--shards", default=None, help="prepared shards (mamsf prepare --size SIZE)")
    parser.add_argument("--size", type=int, default=224, choices=[224, 512])
    parser.add_argument("--weights", default="none", help="a local ImageNet weights file (default: from scratch)")
    parser.add_argument("--out", default="runs/cxr14")
    args = parser.parse_args(argv)
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "chestxray14.toml")
    overrides = ["--set", f"image_size={args.size}", "--set", f"weights={args.weights}"]
    if args.size == 512:
        overrides += ["--set", "batch_size=16"]
    shards = ["--shards", args.shards] if args.shards else []
    for anchor in ("branch", "none"):
        code = mamsf(["train", "--data", args.data, *shards, "--config", config, *overrides,
                      "--set", f"anchor={anchor}", "--out", os.path.join(args.out, anchor)])
        if code:
            return code
    return mamsf(["compare", os.path.join(args.out, "branch", "predictions.npz"),
                  os.path.join(args.out, "none", "predictions.npz"), "--out",
                  os.path.join(args.out, "compare_branch_vs_none")])


if __name__ == "__main__":
    sys.exit(main())
