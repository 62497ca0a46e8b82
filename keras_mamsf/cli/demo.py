"""`mamsf demo`: the whole loop on SYNTHETIC data, in minutes on a CPU: MAMSF and its anchor=None
baseline trained under the same budget (`mamsf train`'s code), evaluated with patient-bootstrap
CIs and a paired comparison, and the MAMSF model exported to int8 TFLite and ONNX with parity gates."""

import json
import os
import sys
import time

# Synthetic findings drawn strongly enough for a from-scratch B0 to learn them in a few CPU minutes
# at 64 px (at `mamsf synth`'s default contrast they are meant to be subtle, and it does not).
DEMO_CONTRAST = 220.0
# A few hundred steps leave BatchNorm's moving statistics behind the weights and the outputs nearly
# constant in inference mode (training/precise_bn.py): the demo's models are re-estimated at the end.
DEMO_PRECISE_BN_IMAGES = 400


def add_parser(commands, name):
    from keras_mamsf.anchor.modes import DEFAULT, MODES
    from keras_mamsf.training.distribution import DISTRIBUTE_CHOICES

    parser = commands.add_parser(
        name,
        help="train MAMSF and its anchor=None baseline on synthetic data, compare them, export MAMSF",
        description="Writes a SYNTHETIC dataset in the NIH ChestX-ray14 layout under OUT/data (or reads --data ROOT), "
        "trains MAMSF (--backbone, default EfficientNetB0, from scratch; --anchor, default branch) and the same "
        "network with anchor=None under the same budget, evaluates both on the patient-disjoint test split "
        "(per-class AUC with patient-"
        "bootstrap 95%% CIs), compares them (DeLong, paired bootstrap), and exports MAMSF to int8 TFLite and ONNX "
        "with parity gates. Each run is a `mamsf train` run folder under OUT/runs (resumable).",
    )
    parser.add_argument("--data", default=None,
                        help="an NIH-layout root to use (default: synthesize one under OUT/data)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--images", type=int, default=1200, help="synthetic images in all (default: 1200)")
    parser.add_argument("--size", type=int, default=64, help="training image side in pixels, >= 32 (default: 64)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per model (default: 6)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: 16: more, smaller steps let the "
                        "BatchNorm statistics catch up in a short run)")
    anchored = [name for name, mode in MODES.items() if mode.has_anchor]
    parser.add_argument("--anchor", default=DEFAULT.name, choices=anchored,
                        help=f"the anchored mode compared with anchor=None (default: {DEFAULT.name})")
    parser.add_argument("--backbone", default="efficientnetb0",
                        help="the backbone of both models, a `mamsf train` backbone name (default: efficientnetb0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--on-bad-image", default="skip", choices=["skip", "error"],
                        help="with --data: skip and count images that are missing or do not decode, or stop")
    parser.add_argument("--no-export", action="store_true", help="skip the int8 TFLite / ONNX export")
    parser.add_argument("--distribute", default="none", choices=DISTRIBUTE_CHOICES,
                        help="multi-device training: mirrored / multiworker (TensorFlow), data_parallel / multiworker "
                        "(JAX), auto = the backend's single-host engine (default: none)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run)
    return parser


def demo_config(args, anchor):
    from keras_mamsf.training.config import TrainConfig

    return TrainConfig(backbone=args.backbone, image_size=args.size, channels=1, anchor=anchor, epochs=args.epochs,
                       batch_size=args.batch_size, learning_rate=3e-3, warmup_epochs=0.0, loss="bce", augment=False,
                       fusion_filters=64, val_fraction=0.2, class_aware=True, seed=args.seed, n_boot=1000,
                       precise_bn_images=DEMO_PRECISE_BN_IMAGES)


def run(args):
    from keras_mamsf.anchor.modes import NONE
    from keras_mamsf.cli.errors import CommandError
    from keras_mamsf.training.config import ConfigError

    if args.images < 8 or args.epochs < 1 or args.batch_size < 1 or args.size < 32:
        raise CommandError(f"--images must be >= 8, --size >= 32 and --epochs, --batch-size >= 1 (got {args.images}, "
                           f"{args.size}, {args.epochs}, {args.batch_size})")
    started = time.time()
    say = (lambda message: print(message, file=sys.stderr, flush=True)) if args.json else \
        (lambda message: print(message, flush=True))
    root = args.data
    synthetic = root is None
    anchors = (args.anchor, NONE.name)
    try:
        configs = {anchor: demo_config(args, anchor) for anchor in anchors}
    except ConfigError as error:
        raise CommandError(str(error).replace("backbone must", "--backbone must")) from None
    say(f"mamsf demo: trains MAMSF ({args.backbone} from scratch, anchor={args.anchor}) and the same network with "
        f"anchor=None, {args.epochs} epochs each at {args.size} px, on "
        + (f"{args.images} SYNTHETIC images (drawn, not chest X-rays)" if synthetic else root)
        + "; evaluates both on the patient-disjoint test split with 95% CIs, compares them, and exports MAMSF to "
          "int8 TFLite and ONNX" + (" (skipped: --no-export)" if args.no_export else "") + f". Outputs: {args.out}")
    from keras_mamsf.training.trainer import train

    if synthetic:
        from keras_mamsf.data.synth import write_synthetic

        root = os.path.join(args.out, "data")
        if not os.path.isfile(os.path.join(root, "SYNTHETIC.txt")):
            write_synthetic(root, images=args.images, size=max(args.size, 64), seed=args.seed, contrast=DEMO_CONTRAST)
    runs = {}
    for anchor in anchors:
        say(f"\n[{anchors.index(anchor) + 1}/{len(anchors) + 1}] training anchor={anchor} -> {args.out}/runs/{anchor}")
        runs[anchor] = train(configs[anchor], root, os.path.join(args.out, "runs", anchor),
                             distribute=args.distribute, on_bad_image=args.on_bad_image,
                             verbose=0 if args.json else "epoch", log=say)
    from keras_mamsf.data.synth import is_synthetic
    from keras_mamsf.evaluation import Predictions, compare_predictions
    from keras_mamsf.evaluation.report import SYNTHETIC_WARNING, write_comparison

    predictions = {anchor: Predictions.load(runs[anchor]["paths"]["predictions"]) for anchor in anchors}
    comparison = compare_predictions(predictions[args.anchor], predictions[NONE.name], n_boot=1000, seed=args.seed)
    comparison_paths = write_comparison(os.path.join(args.out, f"compare_{args.anchor}_vs_{NONE.name}"), comparison,
                                        note=SYNTHETIC_WARNING if is_synthetic(root) else None)
    exports, gate = {}, []
    if not args.no_export:
        say(f"\n[{len(anchors) + 1}/{len(anchors) + 1}] exporting anchor={args.anchor} to int8 TFLite and ONNX "
            f"with parity checks -> {args.out}/export")
        exports, gate = _export(runs[args.anchor], root, os.path.join(args.out, "export"), args.seed, say)
    guarded = next((e["path"] for e in exports.values() if e["path"] and e["path"].endswith(".onnx")
                    and e["status"] == "ok"), runs[args.anchor]["model"])
    summary = {
        "data": "synthetic" if synthetic else os.path.abspath(root),
        "thresholds": _thresholds(runs[args.anchor]["metrics"]["thresholds"]),
        "ood_guard": _guard_check(guarded, runs[args.anchor], root),
        "runs": {anchor: {"macro_auc": run["metrics"]["macro"]["auc"],
                          "macro_auc_ci": run["metrics"]["macro"]["auc_ci"],
                          "per_class": {label: entry["auc"] for label, entry in run["metrics"]["per_class"].items()},
                          "run_dir": run["run_dir"], "report": run["paths"]["report.html"]}
                 for anchor, run in runs.items()},
        "comparison": {"macro_delta_auc": comparison["macro"]["delta_auc"], "ci": comparison["macro"]["ci"],
                       "p_value": comparison["macro"]["p_value"], "report": comparison_paths["compare.html"]},
        "exports": exports,
        "gate": gate,
        "elapsed_s": round(time.time() - started, 1),
    }
    from keras_mamsf.utils import write_text_atomic

    write_text_atomic(os.path.join(args.out, "demo.json"), json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, runs, anchors, comparison, root)
    return 0


def _export(run, root, out_dir, seed, say):
    from keras_mamsf.export import export_model
    from keras_mamsf.export.litert import INT8
    from keras_mamsf.export.parity import gate_table
    from keras_mamsf.inference.formats import ONNX, TFLITE

    report = export_model(run["model"], out_dir, formats=[TFLITE, ONNX], quantize=[INT8],
                          calibration_data=root, parity_data=root, thresholds_path=run["paths"].get("thresholds"),
                          calibration_images=200, seed=seed, log=say)
    exports = {}
    for name, entry in report["artifacts"].items():
        parity = entry.get("parity") or {}
        figures = (parity.get("paths") or {}).get(parity.get("use_output"), {})
        kept = entry.get("file")  # a failed artifact is kept as NAME.FAILED.EXT
        exports[name] = {"path": os.path.join(out_dir, kept) if kept else None, "status": entry["status"],
                         "parity": parity.get("status"), "max_dp": figures.get("max_dp"),
                         "macro_auc_change": figures.get("macro_auc_change"),
                         "failure": (parity.get("failures") or [entry.get("error")])[0] if entry["status"] == "failed"
                         else None, "size_bytes": entry.get("size_bytes")}
    return exports, gate_table(report)


def _thresholds(report):
    """`{label: threshold or "not screened: ..."}` of the anchored run's thresholds.json."""
    return {label: report["not_screened"].get(label, "no threshold") if value is None else value
            for label, value in report["values"].items()}


def _guard_check(model_path, run, root):
    """The OOD guard on a few inputs it must flag (pydicom's CT slice, a blank image, an inverted test image) and
    one it must not (that test image): `{name: {"ood_score", "in_distribution"}}` from `mamsf predict`'s path."""
    import numpy as np
    from pydicom.data import get_testdata_file

    from keras_mamsf.data.images import load_image
    from keras_mamsf.evaluation import Predictions
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.inference.model_card import ood_threshold
    from keras_mamsf.inference.runners import square_input

    runner = load_runner(model_path)
    size, channels = square_input(runner, model_path)
    threshold = ood_threshold(model_path)
    first_test = Predictions.load(run["paths"]["predictions"]).image_index[0]
    x_ray = load_image(os.path.join(root, "images", str(first_test)), size, channels)
    inputs = {f"test image {first_test}": x_ray, "the same image inverted": 255.0 - x_ray,
              "blank (all black)": np.zeros_like(x_ray),
              "CT slice (pydicom CT_small.dcm, read with --force)": load_image(get_testdata_file("CT_small.dcm"), size,
                                                                               channels, force=True)}
    scores = runner.predict(np.stack(list(inputs.values())))["ood_score"]
    return {"model": model_path, "threshold": threshold,
            "inputs": {name: {"ood_score": float(score), "in_distribution": bool(score <= threshold)}
                       for name, score in zip(inputs, scores)}}


def _print_summary(summary, runs, anchors, comparison, root):
    from keras_mamsf.evaluation.plots import value_text
    from keras_mamsf.evaluation.report import comparison_lines

    anchored, baseline = anchors
    print(f"\n== mamsf demo on SYNTHETIC data ({root}); {summary['elapsed_s']:.0f} s ==" if summary["data"] ==
          "synthetic" else f"\n== mamsf demo on {summary['data']}; {summary['elapsed_s']:.0f} s ==")
    metrics = {anchor: runs[anchor]["metrics"] for anchor in anchors}
    test = metrics[anchored]
    print(f"test split: {test['n_images']} images of {test['n_patients']} patients; 95% CIs from {test['n_boot']} "
          "patient resamples")
    print("\n".join(comparison_lines(comparison, anchored, baseline)[:-1]))
    for anchor in anchors:
        macro = metrics[anchor]["macro"]
        print(f"macro AUC, anchor={anchor}: {value_text(macro['auc'], macro['auc_ci'])} "
              f"over {macro['classes']} classes")
    print(comparison_lines(comparison, anchored, baseline)[-1] + "; one synthetic run, not evidence about real X-rays")
    print("one seed on one machine cannot settle whether the anchor helps (the same code and seeds have given "
          "opposite verdicts on two machines): repeat with --seed 1 and --seed 2, or run `mamsf ablate --seeds 3`")
    for name, entry in summary["exports"].items():
        change = "" if entry["macro_auc_change"] is None else f", macro AUC change {entry['macro_auc_change']:+.4f}"
        kept = "" if entry["status"] == "ok" or not entry["path"] else f"; kept as {os.path.basename(entry['path'])}"
        max_dp = "n/a" if entry["max_dp"] is None else f"{entry['max_dp']:.2g}"
        print(f"export {name}: {entry['status']}, parity {entry['parity']} (max |dp| {max_dp}{change}{kept})")
        if entry["failure"]:
            print(f"  why: {entry['failure']}" + ("; not for a device" if name.endswith(".tflite") else ""))
    if summary["gate"]:
        print("\n".join(summary["gate"]))
    report = runs[anchored]["metrics"]["thresholds"]
    print(f"screening thresholds (anchor={anchored}, '{report['rule']}' rule: sensitivity >= "
          f"{report['min_sensitivity']:g} with probability {1 - report['delta']:g}, chosen on val):")
    for label, value in summary["thresholds"].items():
        print(f"  {label:<20} " + (f"{value:.4f}" if isinstance(value, float) else value))
    guard = summary["ood_guard"]
    print(f"out-of-distribution guard ({os.path.basename(guard['model'])}, threshold {guard['threshold']:.2f}):")
    for name, entry in guard["inputs"].items():
        verdict = "in distribution" if entry["in_distribution"] else "OUT of distribution: findings withheld"
        print(f"  {name:<50} ood_score {entry['ood_score']:8.2f}  {verdict}")
    reports = [runs[a]["paths"]["report.html"] for a in anchors] + [summary["comparison"]["report"]]
    print("reports: " + ", ".join(reports))
