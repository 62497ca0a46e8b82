"""`mamsf predict`: per-class probabilities for X-ray images from any exported format."""

import json
import os


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="run a .keras, SavedModel, .tflite or .onnx model on PNG / JPEG / DICOM images",
        description="Preprocesses every image exactly as in training (grayscale, DICOM VOI LUT and MONOCHROME1 "
        "inversion, antialiased area resize to the model's input), runs the model in its own runtime and prints "
        "each class's probability and the findings at or above their threshold (from the manifest.json beside "
        "the model, else 0.5).",
    )
    parser.add_argument("--model", required=True, help="a .keras file, SavedModel folder, .tflite or .onnx file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for LiteRT / onnxruntime")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--gradcam", metavar="LABEL|all", default=None,
                        help="also write Grad-CAM heatmaps over each image for LABEL (or every class) as PNGs "
                        "(a .keras model only)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where --gradcam writes its PNGs")
    parser.add_argument("--dicom-window", default="auto", choices=["auto", "file", "minmax"],
                        help="DICOM contrast: auto = histogram-equalized to ChestX-ray14's appearance (default), "
                        "file = the file's own VOI LUT / window, minmax = a linear stretch of its values")
    parser.add_argument("--force", action="store_true",
                        help="read DICOM files that are refused by default: multi-frame (first frame), colour "
                        "(channel mean), a Modality other than CR/DX, or not a chest by BodyPartExamined / "
                        "ViewPosition")
    parser.add_argument("--show-ood", action="store_true",
                        help="show the findings of images the out-of-distribution guard flags (withheld by default)")
    parser.set_defaults(run=run)
    return parser


def predict_files(model_path, paths, threads=None, dicom_window="auto", force=False, show_ood=False):
    """`[{"image", "probs": {label: p}, "findings": [...], "not_screened": [...], "in_distribution",
    "ood_score", "withheld"}, ...]`, the thresholds used, and the output read.

    `in_distribution` is False when the model's out-of-distribution guard scores the image above its
    threshold (None without a guard); then `findings` is empty and `withheld` says why, unless `show_ood`.
    `not_screened` lists the classes without a threshold (never reported negative)."""
    import numpy as np

    from keras_mamsf.data.images import check_image_file, load_image
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.inference.model_card import model_card, ood_threshold, uses_test_time_flip
    from keras_mamsf.inference.runners import predict_scores, square_input

    for path in paths:  # before loading the model: a wrong path or an oversized image fails at once
        check_image_file(path, force)
    labels, thresholds, use = model_card(model_path)
    runner = load_runner(model_path, num_threads=threads)
    size, channels = square_input(runner, model_path)
    images = np.stack([load_image(path, size, channels, dicom_window, force) for path in paths])  # errors name the file
    # the thresholds hold for scores made as they were chosen on: flip-averaged when the model card says so
    probs, outputs = predict_scores(runner, images, use, test_time_flip=uses_test_time_flip(model_path))
    if probs.shape[1] != len(labels):
        raise ValueError(f"{model_path}: {probs.shape[1]} outputs for {len(labels)} labels")
    limit = ood_threshold(model_path) if "ood_score" in outputs else None
    results = []
    for k, (path, row) in enumerate(zip(paths, probs)):
        scores = {label: float(p) for label, p in zip(labels, row)}
        findings = [label for label in labels if thresholds[label] is not None and scores[label] >= thresholds[label]]
        score = None if limit is None else float(outputs["ood_score"][k])
        typical = None if limit is None else bool(score <= limit)
        withheld = None
        if typical is False:
            withheld = (f"out of distribution: ood_score {score:.2f} > {limit:.2f} (the image does not look like the "
                        "training X-rays); findings withheld" + (", shown by --show-ood" if show_ood else ""))
        results.append({"image": os.fspath(path), "probs": scores,
                        "findings": findings if typical is not False or show_ood else [],
                        "not_screened": [label for label in labels if thresholds[label] is None],
                        "in_distribution": typical, "ood_score": score, "ood_threshold": limit, "withheld": withheld})
    return results, thresholds, use


def write_gradcams(model_path, paths, label, out_dir, dicom_window="auto", force=False):
    """Grad-CAM overlays `OUT/<image>_<label>.png` for `label` ("all": every class); returns the paths."""
    from keras_mamsf.data.images import load_image
    from keras_mamsf.explain.grad_cam import class_index, grad_cam, overlay, with_colour_scale, write_png
    from keras_mamsf.inference.formats import KERAS, artifact_format
    from keras_mamsf.inference.model_card import model_card
    from keras_mamsf.models.io import load_model

    if artifact_format(model_path) is not KERAS:
        raise ValueError(f"--gradcam needs the .keras model (an exported file has no fusion feature map): "
                         f"{model_path}")
    model = load_model(model_path)
    labels = list(model_card(model_path)[0])
    chosen = labels if label == "all" else [labels[class_index(label, len(labels), labels)]]
    _, height, width, channels = model.inputs[0].shape
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in paths:
        image = load_image(path, height, channels, dicom_window, force)
        stem = os.path.splitext(os.path.basename(path))[0]
        for name in chosen:
            heatmap = grad_cam(model, image, name, labels)
            picture = with_colour_scale(overlay(image, heatmap))
            written.append(write_png(os.path.join(out_dir, f"{stem}_{name}.png"), picture))
    return written


def run(args):
    import sys

    from keras_mamsf.inference.formats import artifact_format
    from keras_mamsf.inference.model_card import model_card_with_source, parity_warning, uses_test_time_flip

    if args.gradcam and not args.out:
        raise ValueError("--gradcam writes PNGs: add --out DIR")
    artifact_format(args.model)  # a missing (or set-aside) model file says so before any warning about it
    warning = parity_warning(args.model)
    if warning:
        print(warning, file=sys.stderr)
    results, thresholds, use = predict_files(args.model, args.images, args.threads, args.dicom_window, args.force,
                                             args.show_ood)
    source = model_card_with_source(args.model)[3]
    flip = uses_test_time_flip(args.model)
    if args.gradcam:
        written = write_gradcams(args.model, args.images, args.gradcam, args.out, args.dicom_window, args.force)
        if not args.json:
            print(f"Grad-CAM ({args.gradcam}): {len(written)} PNG(s) in {args.out}")
    if args.json:
        print(json.dumps({"model": args.model, "output": use, "test_time_flip": flip, "thresholds": thresholds,
                          "thresholds_source": source, "results": results}, indent=2))
        return 0
    print(f"thresholds: {source}")
    if flip:
        print("scores: the mean over each image and its left-right mirror (test_time_flip, as the thresholds were "
              "chosen)")
    if results and results[0]["in_distribution"] is None:
        print("OOD guard: none (an export before 0.4, or a .keras file without ood_guard.npz beside it)")
    for result in results:
        if result["withheld"] and not args.show_ood:
            print(f"{result['image']}: {result['withheld']}")
            continue
        findings = ", ".join(result["findings"]) or "none above threshold"
        print(f"{result['image']}: {findings}" + (f"  [{result['withheld']}]" if result["withheld"] else ""))
        for label, p in sorted(result["probs"].items(), key=lambda item: -item[1]):
            mark = "*" if label in result["findings"] else " "
            limit = "not screened" if thresholds[label] is None else f"threshold {thresholds[label]:.3f}"
            print(f"  {mark} {label:<20} {p:.4f}  ({limit})")
    return 0
