"""`mamsf prepare`: resize a ChestX-ray14 root once into TFRecord shards (TFDS)."""

import json


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="resize the dataset once into TFRecord shards for fast training",
        description="Reads the NIH layout under --data, resizes every image once (antialiased area resize) and "
        "writes TFDS shards under --out (splits train / val / test: NIH's lists with a patient-disjoint val "
        "part). Training then reads the shards instead of decoding 1024 px PNGs.",
    )
    parser.add_argument("--data", required=True, help="dataset root (NIH layout)")
    parser.add_argument("--out", required=True, help="folder for the shards")
    parser.add_argument("--size", type=int, default=256, help="image side: 224, 256 or 512 (others work too)")
    parser.add_argument("--on-bad-image", default="error", choices=["error", "skip"])
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the val carve")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_mamsf.data.shards import prepare_shards

    summary = prepare_shards(args.data, args.out, size=args.size, on_bad_image=args.on_bad_image,
                             val_fraction=args.val_fraction, seed=args.seed)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
        print(f"wrote {args.size}px shards to {summary['shards']}: {splits}")
        for reason, count in summary["skipped"].items():
            print(f"skipped ({reason}): {count}")
    return 0
