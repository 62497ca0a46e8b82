"""`mamsf evaluate`: per-class AUC / AP with patient-level CIs, thresholds, calibration, a report."""

import json
import os

SPLITS = ("train", "val", "test")


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="per-class AUC and AP with patient-bootstrap 95%% CIs, thresholds and calibration, with a report",
        description="Scores a model (.keras, SavedModel folder, .tflite or .onnx, each in its own runtime) on a split "
        "of an NIH-layout root, or reads saved scores (--predictions FILE.npz), and writes predictions.npz, "
        "metrics.json, report.md, a self-contained report.html and PNG plots into --out. Intervals resample "
        "patients (all of a patient's images together) when patient ids are known, images otherwise.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="FILE", help="a .keras file, SavedModel folder, .tflite or .onnx file")
    source.add_argument("--predictions", metavar="FILE.npz",
                        help="saved scores: NPZ with y_true, y_score [, patient_id, image_index, labels]")
    parser.add_argument("--data", metavar="ROOT", help="NIH-layout root (with --model)")
    parser.add_argument("--split", default="test", help=f"the split to evaluate: {', '.join(SPLITS)} (default: test)")
    parser.add_argument("--shards", metavar="DIR", default=None,
                        help="read the split from `mamsf prepare` shards at the model's input size")
    parser.add_argument("--split-method", default="official", help="official or patient (default: official)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of train_val patients held out as val (default: 0.1, as mamsf prepare)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the val carve (default: 0)")
    parser.add_argument("--on-bad-image", default="error", choices=["error", "skip"],
                        help="a listed image that is missing or not a PNG: stop (default: a test figure should "
                        "count every test image), or skip it and count it in metrics.json. `mamsf train` skips by "
                        "default instead: a bad training image costs one example, not the verdict")
    parser.add_argument("--thresholds-from", metavar="val|FILE.npz", default=None,
                        help="choose per-class thresholds on the val split (with --model) or on a predictions "
                        "file of validation data; written to thresholds.json (read by mamsf export --thresholds)")
    parser.add_argument("--threshold-rule", default="guaranteed",
                        help="the rule thresholds.json follows: guaranteed (the Clopper-Pearson lower bound of "
                        "sensitivity >= --min-sensitivity with probability 1 - --delta; classes with too few "
                        "validation positives are not screened), sensitivity (the point estimate >= "
                        "--min-sensitivity), youden or f1 (default: guaranteed)")
    parser.add_argument("--min-sensitivity", type=float, default=0.9,
                        help="S of the guaranteed and sensitivity rules (default: 0.9)")
    parser.add_argument("--delta", type=float, default=0.05,
                        help="the guaranteed rule's risk: its bound holds with probability 1 - delta (default: 0.05)")
    parser.add_argument("--baseline", metavar="FILE", default=None,
                        help="predictions (.npz) or a model of the same images to compare with: the report adds "
                        "each class's AUC change (this minus baseline) with CI and DeLong p-value")
    parser.add_argument("--test-time-flip", default=None, choices=["on", "off"],
                        help="score --model over each image and its left-right mirror (on) or once (off); default: "
                        "as its model card says (the run's config.toml test_time_flip, or the manifest). A --baseline "
                        "model is scored as its own card says, so --baseline of the same file compares the two")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for LiteRT / onnxruntime")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--json", action="store_true", help="print metrics.json")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_mamsf.cli.errors import CommandError
    from keras_mamsf.evaluation import (
        Predictions,
        compare_predictions,
        evaluate_predictions,
    )
    from keras_mamsf.evaluation.report import write_evaluation
    from keras_mamsf.stats.thresholds import RULES

    if args.split not in SPLITS:
        raise CommandError(f"unknown --split {args.split!r}: choose one of {', '.join(SPLITS)}")
    if args.threshold_rule not in RULES:
        raise CommandError(f"unknown --threshold-rule {args.threshold_rule!r}: choose one of {', '.join(RULES)}")
    if not 0.0 < args.min_sensitivity <= 1.0:
        raise CommandError(f"--min-sensitivity must be in (0, 1], got {args.min_sensitivity}")
    if not 0.0 < args.delta < 1.0:
        raise CommandError(f"--delta must be in (0, 1), got {args.delta}")
    if args.n_boot < 0 or args.batch_size < 1:
        raise CommandError(f"--n-boot must be >= 0 and --batch-size >= 1 (got {args.n_boot}, {args.batch_size})")
    if args.model and not args.data:
        raise CommandError("--model needs --data ROOT (the NIH-layout root whose split it is scored on)")
    if args.predictions and args.thresholds_from == "val":
        raise CommandError("--thresholds-from val: no validation split with --predictions; pass the validation "
                           "predictions file instead (--thresholds-from VAL.npz)")

    validation, guard_report = None, None  # a predictions file has no OOD scores
    if args.predictions and args.test_time_flip:
        raise CommandError("--test-time-flip scores a --model; a --predictions file was scored when it was written")
    if args.predictions:
        predictions = Predictions.load(args.predictions)
        source = {"predictions": os.path.abspath(args.predictions)}
    else:
        records, index = _records(args)
        if args.thresholds_from == "val":
            if args.split == "val":
                raise CommandError("--thresholds-from val with --split val: thresholds would be chosen on the set "
                                   "they are reported on; evaluate the test split")
            if records is not None and not records["val"]:
                raise CommandError(f"--thresholds-from val: the val split of {args.data} is empty "
                                   f"(--val-fraction {args.val_fraction}); raise --val-fraction")
        flip = None if args.test_time_flip is None else args.test_time_flip == "on"
        predictions, source, guard_report = _score(args, args.model, args.split, records, index, flip)
        if args.thresholds_from == "val":
            validation = _score(args, args.model, "val", records, index, flip)[0]
    if args.thresholds_from not in (None, "val"):
        validation = Predictions.load(args.thresholds_from)
    metrics = evaluate_predictions(predictions, n_boot=args.n_boot, seed=args.seed, validation=validation,
                                   threshold_rule=args.threshold_rule, min_sensitivity=args.min_sensitivity,
                                   source=source, delta=args.delta)
    if guard_report is not None:
        metrics["ood_guard"] = guard_report
    if args.baseline:
        if args.baseline.endswith(".npz"):
            baseline = Predictions.load(args.baseline)
        elif args.predictions:
            raise CommandError("--baseline MODEL needs --model and --data (to score it on the same images); "
                               "with --predictions pass the baseline's predictions file")
        else:
            baseline = _score(args, args.baseline, args.split, records, index)[0]
        metrics["vs_baseline"] = compare_predictions(predictions, baseline, n_boot=args.n_boot, seed=args.seed)
    paths = write_evaluation(args.out, predictions, metrics)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_summary(metrics, paths)
    return 0


def _records(args):
    """`(records by split, NihIndex)` of --data; `(None, None)` when the images come from shards."""
    from keras_mamsf.data import nih, splits

    if args.shards:
        return None, None
    index = nih.read_nih(args.data, on_bad_image=args.on_bad_image)
    parts = splits.make_splits(index.records, index.lists, args.split_method, args.val_fraction, args.split_seed)
    return parts, index


def _score(args, model, split, records, index, test_time_flip=None):
    """`(Predictions, source dict, the OOD guard's report or None)` of a model file on one split of --data."""
    from keras_mamsf.evaluation.scoring import score_split, split_source

    if not os.path.exists(model):
        raise FileNotFoundError(f"{model}: no such model file or folder")
    if records is not None and not records[split]:
        raise ValueError(f"the {split} split of {args.data} is empty; nothing to evaluate")
    from keras_mamsf.data.sources import image_source

    predictions, details = score_split(model, image_source(records, args.shards), split=split,
                                       batch_size=args.batch_size, threads=args.threads, test_time_flip=test_time_flip)
    guard_report = details.pop("ood_guard", None)
    return predictions, split_source(model, args.data, split, args.split_method, args.val_fraction, args.split_seed,
                                     index, **details), guard_report


def print_summary(metrics, paths):
    from keras_mamsf.evaluation.plots import value_text

    source = metrics["source"]
    where = source.get("model") or source.get("predictions")
    split = f", split {source['split']}" if "split" in source else ""
    patients = metrics["n_patients"] if metrics["n_patients"] is not None else "unknown"
    print(f"{where}{split}: {metrics['n_images']} images, {patients} patients")
    print(f"95% CIs: {metrics['n_boot']} bootstrap resamples of {metrics['resampling']}s, seed {metrics['seed']}")
    if source.get("test_time_flip"):
        print("scores: the mean over each image and its left-right mirror (test_time_flip)")
    change = metrics.get("vs_baseline")
    header = f"  {'class':<20} {'pos':>5}  {'AUC [95% CI]':<24} {'AP [95% CI]':<24}"
    print(header + ("  AUC change vs baseline [95% CI], p" if change else ""))
    for label, entry in metrics["per_class"].items():
        if entry.get("interval"):  # too few positives: point figures only, said once
            line = f"  {label:<20} {entry['positives']:>5}  AUC {value_text(entry['auc'], None)}, " \
                   f"AP {value_text(entry['ap'], None)}: {entry['interval']}"
        else:
            line = f"  {label:<20} {entry['positives']:>5}  {value_text(entry['auc'], entry['auc_ci']):<24} " \
                   f"{value_text(entry['ap'], entry['ap_ci']):<24}"
        if change and change["per_class"][label]["scorable"]:
            delta = change["per_class"][label]
            line += (f"  {delta['delta_auc']:+.4f}, no p-value" if delta["p_value"] is None else
                     f"  {value_text(delta['delta_auc'], delta['ci'], 4)}, p={delta['p_value']:.3g}")
        print(line)
    macro = metrics["macro"]
    print(f"macro AUC over {macro['classes']} scorable classes: {value_text(macro['auc'], macro['auc_ci'])}; "
          f"macro AP {value_text(macro['ap'], macro['ap_ci'])}")
    if macro["not_scorable"]:
        print(f"not scorable here (no positive or no negative): {', '.join(macro['not_scorable'])}")
    if change:
        print(f"macro AUC change vs baseline: {value_text(change['macro']['delta_auc'], change['macro']['ci'], 4)}, "
              f"p={change['macro']['p_value']:.3g}")
    if metrics["thresholds"]:
        print(f"thresholds ({metrics['thresholds']['rule']} rule, "
              f"chosen on {metrics['thresholds']['chosen_on']['source']}): "
              f"{paths['thresholds']}")
        report = metrics["thresholds"]
        rule = report["rule"]
        for label, value in report["values"].items():
            if value is None:
                print(f"  {label:<20} {report['not_screened'].get(label, 'no threshold')}")
                continue
            figures = report["per_class"][label].get(rule, {})
            guarantee = report["guarantee"][label] if rule == "guaranteed" else None
            basis = "" if guarantee is None else (f" (val: {guarantee['caught']} of {guarantee['positives']} caught, "
                                                  f"bound {guarantee['bound']:.3f})")
            print(f"  {label:<20} {value:.4f}{basis}: test sensitivity "
                  f"{value_text(figures['sensitivity']['value'], figures['sensitivity']['ci'])}, specificity "
                  f"{value_text(figures['specificity']['value'], figures['specificity']['ci'])}")
    if metrics.get("ood_guard"):
        guard = metrics["ood_guard"]
        print(f"OOD guard: flagged {guard['flagged']} of {guard['images']} images ({100 * guard['share']:.1f}%; "
              f"threshold {guard['threshold']:.3f})")
    print(f"report: {paths['report.html']} (and report.md, metrics.json, predictions.npz, plots)")
