"""`mamsf export`: a trained `.keras` file -> SavedModel / TFLite / ONNX, verified, with a manifest."""

import argparse
import json
import sys


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="export a .keras model to SavedModel, TFLite (float32/float16/dynamic/int8) and ONNX, with parity checks",
        description="Rebuilds the model's inference graph in float32 (anchor weights included), writes each format "
        "into --out with labels.txt and manifest.json, loads every artifact in its own runtime (TensorFlow, LiteRT, "
        "onnxruntime) and compares it with the Keras model on held-out images. Exits 1 if an artifact fails to "
        "convert or fails its parity gate (the manifest keeps its figures).",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def add_arguments(parser, formats=True):
    from keras_mamsf.export.gates import GATES

    parser.add_argument("model", metavar="MODEL.keras", help="a model saved by mamsf (safe_mode load)")
    parser.add_argument("--out", required=True, help="output folder (artifacts, labels.txt, manifest.json)")
    if formats:
        from keras_mamsf.inference.formats import EXPORT_FORMATS

        names = [fmt.name for fmt in EXPORT_FORMATS]
        parser.add_argument("--format", default=",".join(names),
                            help=f"comma list of {', '.join(names)} (default: all of them)")
    parser.add_argument("--quantize", default=None,
                        help="TFLite variants, a comma list of float32, float16, dynamic, int8 "
                        "(default: float32,float16,dynamic, plus int8 when --calibration-data is given)")
    parser.add_argument("--calibration-data", metavar="ROOT", default=None,
                        help="int8 calibration images: the training split of an NIH-layout root or of prepared shards")
    parser.add_argument("--calibration-images", type=int, default=300, help="calibration images (default: 300)")
    parser.add_argument("--io-type", default="uint8", choices=["uint8", "int8"], help="int8 model input/output type")
    parser.add_argument("--parity-data", metavar="ROOT", default=None,
                        help="images for the parity gate: the validation split of this root, split as the model's run "
                        "split it (default: --calibration-data's; with neither, a small synthetic set)")
    parser.add_argument("--parity-images", type=int, default=None,
                        help="at most this many validation images for the gate, a seeded sample (default: all)")
    parser.add_argument("--thresholds", metavar="FILE", default=None,
                        help="JSON {label: threshold} for the decision agreement and the manifest (default: 0.5 each)")
    parser.add_argument("--max-dp", type=float, default=GATES["exact"]["max_dp"],
                        help="gate: max |probability difference| of float32 artifacts (default: %(default)g)")
    parser.add_argument("--margin", type=float, default=GATES["quantized"]["margin"],
                        help="gate for quantized TFLite (non-inferiority): a class passes when the one-sided 95%% "
                        "lower bound of its AUC change is above -MARGIN (default: %(default)g)")
    parser.add_argument("--min-positives", type=int, default=GATES["quantized"]["min_positives"],
                        help="gate for quantized TFLite: classes with fewer validation positives are not judged "
                        "(default: %(default)s)")
    parser.add_argument("--mixed", action=argparse.BooleanOptionalAction, default=True,
                        help="when full int8 fails its gate, also write model_int8_mixed.tflite: int8 with the ops "
                        "that lose the most kept in float, as few as pass the gate (for Android/CPU; default: on)")
    parser.add_argument("--mixed-max-flipped", type=float, default=None, metavar="SHARE",
                        help="the mixed file must also call as the float model does, at its thresholds, on all but "
                        "this share of the validation images per screened class, on average (default: 0.02; 1: the "
                        "gate alone)")
    parser.add_argument("--int8-rounding", choices=["gptq", "nearest"], default="gptq",
                        help="how int8 weights are rounded: gptq (default: with error feedback on the calibration "
                        "films, so that layer outputs keep closer to float) or nearest (the converter's own)")
    parser.add_argument("--guard", metavar="FILE", default=None,
                        help="the OOD guard (ood_guard.npz) whose ood_score every artifact carries (default: the "
                        "run's ood_guard.npz beside MODEL, else one fitted on --calibration-data)")
    parser.add_argument("--ood-alpha", type=float, default=None,
                        help="refit the OOD guard with this false-alarm rate on validation images (default: the "
                        "run's guard, or 0.01)")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    parser.add_argument("--keep-failed", action=argparse.BooleanOptionalAction, default=True,
                        help="keep an artifact that fails its gate, renamed NAME.FAILED.EXT (model_int8.FAILED.tflite) "
                        "so it cannot be shipped by mistake; --no-keep-failed deletes it (default: keep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args, formats=None):
    from keras_mamsf.export.exporter import MIXED_MAX_FLIPPED, export_model, parse_formats
    from keras_mamsf.export.gates import GATES
    from keras_mamsf.export.litert import parse_variants

    if args.calibration_images < 1 or (args.parity_images is not None and args.parity_images < 1):
        raise ValueError("--calibration-images and --parity-images must be >= 1")
    if args.ood_alpha is not None and not 0.0 < args.ood_alpha < 1.0:
        raise ValueError(f"--ood-alpha must be in (0, 1), got {args.ood_alpha}")
    mixed_max_flipped = MIXED_MAX_FLIPPED if args.mixed_max_flipped is None else args.mixed_max_flipped
    if not 0.0 <= mixed_max_flipped <= 1.0:
        raise ValueError(f"--mixed-max-flipped is a share of the images, in [0, 1]; got {mixed_max_flipped}")
    if args.max_dp < 0 or args.margin <= 0 or args.min_positives < 1:
        raise ValueError(f"gates: --max-dp must be >= 0, --margin > 0 and --min-positives >= 1 (got {args.max_dp}, "
                         f"{args.margin}, {args.min_positives})")
    gates = {"exact": {"max_dp": args.max_dp},
             "quantized": dict(GATES["quantized"], max_dp=args.max_dp, margin=args.margin,
                               min_positives=args.min_positives)}
    report = export_model(
        args.model, args.out,
        formats=parse_formats(formats or args.format),
        quantize=None if args.quantize is None else parse_variants(args.quantize),
        calibration_data=args.calibration_data, parity_data=args.parity_data, verify=not args.no_verify,
        io_type=args.io_type, thresholds_path=args.thresholds, calibration_images=args.calibration_images,
        parity_images=args.parity_images, seed=args.seed, gates=gates, keep_failed=args.keep_failed,
        guard_path=args.guard, ood_alpha=args.ood_alpha, mixed=args.mixed, int8_rounding=args.int8_rounding,
        mixed_max_flipped=mixed_max_flipped,
        log=None if args.json else (lambda message: print(message, file=sys.stderr)),
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, entry in report["artifacts"].items():
            print(f"{entry['status']:>6}  {args.out.rstrip('/')}/{entry.get('file') or name}"
                  + ("" if entry.get("file") or entry["status"] == "ok" else " (not kept)"))
        print(f"manifest: {args.out.rstrip('/')}/manifest.json")
    if report["failed"]:
        print(f"{args.error_prefix} failed: {', '.join(report['failed'])} (figures in the manifest; "
              f"{'kept as *.FAILED.*' if args.keep_failed else 'not kept: --no-keep-failed'})", file=sys.stderr)
        return 1
    return 0
