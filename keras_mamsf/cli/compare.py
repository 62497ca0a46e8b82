"""`mamsf compare`: A minus B on the same images, per class and macro, with CIs and paired tests."""

import json


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="paired comparison of two predictions files: delta AUC with 95%% CI, DeLong p-values (raw and Holm)",
        description="A minus B on the same images (the files' image names, labels and ground truth must match): per "
        "class the AUC difference with a paired bootstrap 95%% CI (patients resampled when the files carry patient "
        "ids) and DeLong's p-value, raw and Holm-adjusted over the scorable classes; the macro difference with its "
        "paired bootstrap CI and p-value.",
    )
    parser.add_argument("a", metavar="A.npz", help="predictions of model A (e.g. anchored)")
    parser.add_argument("b", metavar="B.npz", help="predictions of model B (e.g. the anchor=None baseline)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="write compare.json, compare.md, compare.html and a forest plot here")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_mamsf.cli.errors import CommandError
    from keras_mamsf.evaluation import Predictions, compare_predictions
    from keras_mamsf.evaluation.report import comparison_lines, comparison_names

    if args.n_boot < 0:
        raise CommandError(f"--n-boot must be >= 0, got {args.n_boot}")
    comparison = compare_predictions(Predictions.load(args.a), Predictions.load(args.b), n_boot=args.n_boot,
                                     seed=args.seed)
    paths = None
    if args.out:
        from keras_mamsf.evaluation.report import write_comparison

        paths = write_comparison(args.out, comparison)
    if args.json:
        print(json.dumps(comparison, indent=2))
        return 0
    name_a, name_b = comparison_names(comparison)
    print(f"{name_a}: {args.a}\n{name_b}: {args.b}")
    print(f"{comparison['n_images']} images, {comparison['n_patients'] or 'unknown'} patients; 95% CIs from "
          f"{comparison['n_boot']} paired bootstrap resamples of {comparison['resampling']}s, "
          f"seed {comparison['seed']}")
    print("\n".join(comparison_lines(comparison)))
    if paths:
        print(f"report: {paths['compare.html']}")
    return 0
