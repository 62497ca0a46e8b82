"""The reviewer's ablation from Python: a grid of cells x seeds, each a `train` run, then the report.

    python examples/ablation.py --data data/ChestX-ray14 --out ablation [--grid modes] [--seeds 3]

The same as `mamsf ablate` (which adds --shard I/N for job arrays and --report-only): every cell-seed
is a resumable run folder under OUT/runs/, and OUT/ablation.{md,html,json} holds mean ± sd over seeds,
the paired comparison with the `none` cell, the minority-class drift and the protocol.
"""

import argparse
import os

from keras_mamsf.training.ablation import report_ablation, run_ablation
from keras_mamsf.training.config import TrainConfig
from keras_mamsf.training.grid import named_grid


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an NIH-layout root (mamsf synth writes one)")
    parser.add_argument("--out", default="ablation")
    parser.add_argument("--grid", default="modes", help="reviewer, modes, anchored_part or decay")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "chestxray14.toml")
    base = TrainConfig.from_file(config).replace(drift_monitor=True)
    cells = named_grid(args.grid, base)
    seeds = [base.seed + k for k in range(args.seeds)]
    run_ablation(base, cells, seeds, args.data, args.out)
    result, paths = report_ablation(args.out, base, cells, seeds)
    for name, entry in result["cells"].items():
        vs = entry["vs_none"]
        print(f"{name:<24} macro AUC {entry['macro_auc']['mean']:.4f}"
              + ("" if vs is None else f"  vs none {vs['delta_auc']:+.4f} {vs['ci']} p={vs['p_value']:.3g}"))
    print(f"report: {paths['html']}")


if __name__ == "__main__":
    main()
