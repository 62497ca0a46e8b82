"""`mamsf train`: train, checkpoint and evaluate a MAMSF model on an NIH-layout root; resumable."""

import json
import os
import sys

PROGRESS_CHOICES = ("auto", "bar", "epoch", "none")


def add_parser(commands, name):
    from keras_mamsf.training.distribution import DISTRIBUTE_CHOICES

    parser = commands.add_parser(
        name,
        help="train a MAMSF model from a config (TOML) and --set overrides; resumable; evaluates the best checkpoint",
        description="Trains on the train split of --data (patient-disjoint splits), validates each epoch (macro AUC "
        "over the scorable classes), keeps the best checkpoint, and evaluates it on the test split with patient-"
        "bootstrap CIs. Killed and started again with the same command, it continues where it stopped (Keras "
        "BackupAndRestore; the data order is seeded per epoch). Keys: docs/training.md or any written config.toml.",
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="NIH-layout root (mamsf synth writes one)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--config", metavar="FILE", default=None, help="a TOML config (e.g. RUN_DIR/config.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key (repeatable), e.g. --set epochs=5 --set anchor=none")
    parser.add_argument("--shards", metavar="DIR", default=None,
                        help="read images from `mamsf prepare` shards at image_size (fast; a resumed epoch's order "
                        "then differs from an uninterrupted run's)")
    parser.add_argument("--distribute", default="none", choices=DISTRIBUTE_CHOICES,
                        help="multi-device engine: mirrored / multiworker (TensorFlow), "
                        "data_parallel / multiworker (JAX)")
    parser.add_argument("--on-bad-image", default="skip", choices=["skip", "error"],
                        help="an image that is missing or does not decode: skip it and count it (default: a bad "
                        "training image costs one example; the count is in summary.json and metrics.json), or stop. "
                        "`mamsf evaluate` stops by default instead: a test figure should count every test image")
    parser.add_argument("--verify", default="decode", choices=["decode", "header"],
                        help="check every image before training by decoding it (default) or by its header only")
    parser.add_argument("--progress", default="auto", choices=PROGRESS_CHOICES,
                        help="Keras progress output: a bar per step, one line per epoch, or none")
    parser.add_argument("--json", action="store_true", help="print the run's metrics.json at the end")
    parser.set_defaults(run=run)
    return parser


def resolve_config(config_file, overrides):
    """The run's `TrainConfig` from an optional file and `key=value` overrides (all checked)."""
    from keras_mamsf.training.config import TrainConfig

    config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
    return config.with_overrides(overrides)


def run(args):
    from keras_mamsf.cli.errors import CommandError
    from keras_mamsf.training.config import TrainConfig

    config = resolve_config(args.config, args.overrides)
    if not os.path.isdir(args.data):
        raise CommandError(f"{args.data}: no such folder; point --data at an NIH-layout root (or run mamsf synth)")
    previous = os.path.join(args.out, "config.toml")
    if os.path.isfile(previous) and TrainConfig.from_file(previous) != config:
        raise CommandError(f"{args.out} holds a run with other settings (its config.toml); resume it with "
                           f"--config {previous}, or choose another --out")
    from keras_mamsf.training.trainer import train

    summary = train(config, args.data, args.out, shards=args.shards, distribute=args.distribute,
                    on_bad_image=args.on_bad_image, verify=args.verify,
                    verbose=0 if args.json else args.progress,
                    log=lambda message: print(message, file=sys.stderr if args.json else sys.stdout, flush=True))
    if args.json:
        print(json.dumps(summary["metrics"], indent=2))
        return 0
    from keras_mamsf.cli.evaluate import print_summary

    skipped = summary["metrics"]["source"]["skipped_images"]
    if skipped["count"]:
        print(f"skipped {skipped['count']} bad image(s) before training: {', '.join(skipped['first'])}")
    print_summary(summary["metrics"], summary["paths"])
    print(f"best checkpoint: {summary['model']}; TensorBoard: tensorboard --logdir {os.path.join(args.out, 'logs')}")
    return 0
