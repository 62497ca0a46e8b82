"""`mamsf predict`: per-class probabilities for X-ray images from any exported format."""

import json
import os


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="run a .keras, SavedModel, .tflite or .onnx model on PNG / JPEG / DICOM images",
        description="Preprocesses every image exactly as in training (grayscale, DICOM VOI LUT and MONOCHROME1 "
        "inversion, antialiased area resize to the model's input), runs the model in its own runtime and prints "
        "each class's probability and the findings at or above their threshold. Labels, thresholds and the OOD "
        "guard's threshold come from the model card inside the exported file (else the manifest.json beside it; "
        "for a .keras file, its training run folder); an exported file with neither is refused unless --no-card. "
        "A file that cannot be read is reported on its line and the others are predicted; the exit status is 1 "
        "when any failed.",
    )
    parser.add_argument("--model", required=True, help="a .keras file, SavedModel folder, .tflite or .onnx file")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="PNG, JPEG or DICOM files, or folders of them (sorted; --recursive for subfolders)")
    parser.add_argument("--recursive", action="store_true", help="also walk the subfolders of a folder argument")
    parser.add_argument("--strict", action="store_true", help="stop at the first image that cannot be read")
    parser.add_argument("--thresholds", metavar="FILE", default=None,
                        help="JSON thresholds ({label: t or null}, or a run's thresholds.json) instead of the card's")
    parser.add_argument("--no-card", action="store_true",
                        help="run an exported file that has no model card and no manifest.json (an export before "
                        "0.3): scores only, no thresholds (unless --thresholds) and no OOD guard, said on every output")
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


def image_files(arguments, recursive=False):
    """`(paths, skipped)`: the files named, and the images in each folder named, sorted (its subfolders with
    `recursive`); `skipped`: what a folder held that is not an image (by suffix; a file without one counts when it
    is DICOM) and the subfolders not walked, so that nothing is passed over unsaid."""
    from keras_mamsf.data.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, is_dicom

    paths, skipped = [], []
    for argument in arguments:
        argument = os.fspath(argument)
        if not os.path.isdir(argument):
            paths.append(argument)
            continue
        for folder, subfolders, names in os.walk(argument):
            subfolders.sort()
            if not recursive:
                skipped.extend(os.path.join(folder, name) + os.sep for name in subfolders)
                subfolders[:] = []
            for name in sorted(names):
                path = os.path.join(folder, name)
                suffix = os.path.splitext(name)[1].lower()
                if suffix in IMAGE_SUFFIXES + DICOM_SUFFIXES or (not suffix and is_dicom(path)):
                    paths.append(path)
                else:
                    skipped.append(path)
    return paths, skipped


def predict_files(model_path, paths, threads=None, dicom_window="auto", force=False, show_ood=False,
                  thresholds=None, no_card=False, strict=False, batch_size=32):
    """`[{"image", "probs": {label: p}, "findings": [...], "not_screened": [...], "in_distribution",
    "ood_score", "withheld"}, ...]` (`inference.bedside.Bedside.screen`), the thresholds used, and the output read.

    An image that cannot be read gets `{"image", "error"}` in its place and the others are predicted (`strict`:
    the first such error is raised). `in_distribution` is False when the model's out-of-distribution guard scores
    the image above its threshold (None without a guard); then `findings` is empty and `withheld` says why, unless
    `show_ood`. `not_screened` lists the classes without a threshold (never reported negative)."""
    import numpy as np

    from keras_mamsf.data.image_error import ImageError
    from keras_mamsf.data.images import check_image_file, load_image
    from keras_mamsf.inference.bedside import Bedside

    failed = {}
    for path in paths:  # before loading the model: a wrong path or an oversized image is named at once
        try:
            check_image_file(path, force)
        except ImageError as error:
            if strict:
                raise
            failed[os.fspath(path)] = str(error)
    if paths and len(failed) == len(paths):  # nothing to predict: the model is not loaded
        return [{"image": os.fspath(path), "error": failed[os.fspath(path)]} for path in paths], None, None
    model = Bedside(model_path, threads, thresholds, no_card, show_ood=show_ood)
    results, batch = [], []

    def flush():
        images = np.stack([image for _, image in batch])
        for (index, _), result in zip(batch, model.screen(images)):
            results[index].update(result)
        batch.clear()

    for path in paths:
        path = os.fspath(path)
        results.append({"image": path})
        if path in failed:
            results[-1]["error"] = failed[path]
            continue
        try:
            batch.append((len(results) - 1, load_image(path, model.size, model.channels, dicom_window, force)))
        except ImageError as error:  # every reading error names the file
            if strict:
                raise
            results[-1]["error"] = str(error)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return results, model.thresholds, model.output


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

    from keras_mamsf.data.image_error import ImageError
    from keras_mamsf.inference.bedside import NO_CARD
    from keras_mamsf.inference.formats import artifact_format
    from keras_mamsf.inference.model_card import find_card, parity_warning

    if args.gradcam and not args.out:
        raise ValueError("--gradcam writes PNGs: add --out DIR")
    artifact_format(args.model)  # a missing (or set-aside) model file says so before any warning about it
    card, where = find_card(args.model)
    warning = parity_warning(args.model, card)
    if warning:
        print(warning, file=sys.stderr)
    paths, skipped = image_files(args.images, args.recursive)
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} path(s) in the folder(s) that are not PNG, JPEG or DICOM images"
              f"{'' if args.recursive else ' (subfolders: --recursive)'}: {shown}", file=sys.stderr)
    if not paths:
        raise ValueError(f"no PNG, JPEG or DICOM images in {', '.join(args.images)}")
    results, thresholds, use = predict_files(args.model, paths, args.threads, args.dicom_window, args.force,
                                             args.show_ood, args.thresholds, args.no_card, args.strict)
    failures = [result for result in results if "error" in result]
    if len(results) == 1 and failures:  # one image and it cannot be read: the command's one-line error
        raise ImageError(failures[0]["error"])
    good = [result["image"] for result in results if "error" not in result]
    no_card = bool(results) and any(result.get("no_card") for result in results)
    source = NO_CARD if no_card and args.thresholds is None else (args.thresholds and os.path.abspath(
        args.thresholds)) or card["thresholds"]["source"]
    flip = bool(card.get("test_time_flip")) and not no_card
    if args.gradcam and good:
        written = write_gradcams(args.model, good, args.gradcam, args.out, args.dicom_window, args.force)
        if not args.json:
            print(f"Grad-CAM ({args.gradcam}): {len(written)} PNG(s) in {args.out}")
    if args.json:
        print(json.dumps({"model": args.model, "card": where, "output": use, "test_time_flip": flip,
                          "thresholds": thresholds, "thresholds_source": source, "results": results,
                          "failed": len(failures)}, indent=2))
        return 1 if failures else 0
    print(f"model card: {where or 'none'}")
    print(f"thresholds: {source}")
    if flip:
        print("scores: the mean over each image and its left-right mirror (test_time_flip, as the thresholds were "
              "chosen)")
    predicted = [result for result in results if "error" not in result]
    if not no_card and predicted and all(result["in_distribution"] is None for result in predicted):
        print("OOD guard: none (the model card has no guard threshold: a .keras file without ood_guard.npz beside "
              "it, or an export made before the guard)")
    for result in results:
        if "error" in result:
            reason = result["error"].removeprefix(f"{result['image']}: ")  # image errors name their file
            print(f"{result['image']}: failed: {reason}")
            continue
        if result["withheld"] and not args.show_ood:
            print(f"{result['image']}: {result['withheld']}")
            continue
        findings = ", ".join(result["findings"]) or "none above threshold"
        if result["no_card"]:
            findings = "scores only" if args.thresholds is None else findings
        notes = [note for note in (result["withheld"], result["no_card"]) if note]
        print(f"{result['image']}: {findings}" + "".join(f"  [{note}]" for note in notes))
        for label, p in sorted(result["probs"].items(), key=lambda item: -item[1]):
            mark = "*" if label in result["findings"] else " "
            limit = thresholds[label]
            limit = ("no threshold" if result["no_card"] else "not screened") if limit is None else \
                f"threshold {limit:.3f}"
            print(f"  {mark} {label:<20} {p:.4f}  ({limit})")
    if failures:
        print(f"{len(failures)} of {len(results)} image(s) failed; the others were predicted", file=sys.stderr)
    return 1 if failures else 0
