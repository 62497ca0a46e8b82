"""`mamsf synth`: write a SYNTHETIC dataset in ChestX-ray14's exact NIH layout."""

import json


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="write a synthetic dataset in the NIH ChestX-ray14 layout",
        description="Writes Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt and images/*.png under "
        "--out: drawn chest-like images (not real X-rays) whose 14 findings follow ChestX-ray14's label "
        "frequencies. For the demo, the tests and trying the pipeline without the real data.",
    )
    parser.add_argument("--out", required=True, help="dataset root to write (created if missing)")
    parser.add_argument("--images", type=int, default=512, help="images in all (default: 512)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels, >= 32 (default: 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contrast", type=float, default=None,
                        help="strength of the drawn findings in grey levels (default: 28, subtle; mamsf demo uses 220)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_mamsf.data.synth import FINDING_CONTRAST, write_synthetic

    contrast = FINDING_CONTRAST if args.contrast is None else args.contrast
    if not 0 < contrast <= 255:
        raise ValueError(f"--contrast must be in (0, 255], got {contrast}")
    summary = write_synthetic(args.out, images=args.images, size=args.size, seed=args.seed, contrast=contrast)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['data']}")
        print(f"wrote {summary['images']} images of {summary['patients']} patients ({args.size} px) to {args.out}; "
              f"{summary['no_finding']} with No Finding; train_val {summary['splits']['train_val']}, "
              f"test {summary['splits']['test']}")
    return 0
