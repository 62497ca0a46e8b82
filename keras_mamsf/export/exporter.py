"""`export_model`: one `.keras` file -> SavedModel / TFLite variants / ONNX, verified, with a manifest.

    report = export_model("runs/model.keras", "exports/", formats=("savedmodel", "tflite", "onnx"),
                          quantize=("float32", "int8"), calibration_data="data/ChestX-ray14")
    report["ok"]   # False when an artifact failed to convert or failed its parity gate

Every artifact starts from the float32 inference graph (`inference.inference_model`), with a
grayscale model's RGB tiling folded into its stem convolution where that is exact
(`folding.fold_grayscale_stem`; the manifest's `graph` says which), and is then loaded in its own
runtime and compared with the unfolded Keras model on held-out images (`parity`),
unless `verify=False`. The held-out images are the test split of `parity_data` (or of
`calibration_data`); with neither, a small synthetic NIH-layout set is drawn for the check and
the manifest says so.
"""

import os
import shutil
import tempfile

import numpy as np

from keras_mamsf.export import edgetpu, litert, manifest, parity
from keras_mamsf.export.folding import fold_grayscale_stem
from keras_mamsf.export.inference import INPUT_NAME, inference_model, input_shape, serving_archive
from keras_mamsf.export.runtime import load_runner
from keras_mamsf.utils import atomic_directory, atomic_path
from keras_mamsf.utils.layers import walk_layers

FORMATS = ("savedmodel", "tflite", "onnx")
ONNX_OPSET = 17
SAVEDMODEL_NAME = "savedmodel"
ONNX_NAME = "model.onnx"


def tflite_name(variant):
    return f"model_{variant}.tflite"


def parse_formats(text):
    formats = [f.strip() for f in str(text).split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format: unknown format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def export_model(model_path, out_dir, formats=FORMATS, quantize=None, calibration_data=None, parity_data=None,
                 verify=True, io_type="uint8", thresholds_path=None, calibration_images=300, parity_images=200,
                 seed=0, gates=None, log=None, keep_failed=True):
    """Writes the artifacts, `labels.txt` and `manifest.json` into `out_dir`; returns the manifest
    with `ok` (every artifact converted and passed its gate) and `failed` (their names).

    An artifact that fails its parity gate never keeps its normal name (which a device build
    or `mamsf predict` would pick up): it is renamed `NAME.FAILED.EXT` (`keep_failed`, the
    default) or deleted; its manifest entry says `status: failed` and gives the `file`."""
    from keras_mamsf.labels import CHESTXRAY14_LABELS
    from keras_mamsf.models.io import load_model

    log = log or (lambda message: None)
    model_path = os.fspath(model_path)
    formats = list(formats)
    variants = list(quantize) if quantize is not None else (
        ["float32", "float16", "dynamic"] + (["int8"] if calibration_data else []))
    if "tflite" in formats and "int8" in variants and not calibration_data:
        raise ValueError("int8 needs --calibration-data ROOT (an NIH-layout root or a folder of prepared shards)")
    trained = load_model(model_path, compile=False)
    source_sha = manifest.sha256_of(model_path)
    model = inference_model(trained)  # the reference of every parity check
    graph, fold_note = fold_grayscale_stem(model)  # what the artifacts are converted from
    log(f"graph: {fold_note}")
    height, width, channels = input_shape(model)
    classes = int(model.output["probs"].shape[-1])
    if classes != len(CHESTXRAY14_LABELS):
        raise ValueError(f"{model_path}: {classes} outputs, but exports carry the {len(CHESTXRAY14_LABELS)} "
                         "ChestX-ray14 labels; train with num_classes=14")
    labels = list(CHESTXRAY14_LABELS)
    thresholds, threshold_source = manifest.read_thresholds(thresholds_path, labels)

    calibration = None
    if "tflite" in formats and "int8" in variants:
        from keras_mamsf.export.calibration import load_images

        images, _, source = load_images(calibration_data, "train", height, channels, calibration_images, seed)
        calibration = {"images": images, "source": source}
        log(f"calibration: {len(images)} images from {source}")
    held_out = _held_out(parity_data or calibration_data, height, channels, parity_images, seed) if verify else None
    if held_out is not None:
        held_out["reference"] = model.predict(held_out["images"], verbose=0, batch_size=32)["probs"]
        log(f"parity: {len(held_out['images'])} images from {held_out['source']}")

    record = manifest.new_manifest(
        labels,
        {
            "name": INPUT_NAME, "layout": "NHWC", "height": height, "width": width, "channels": channels,
            "dtype": "float32", "range": [0, 255],
            "normalization": "none outside the model: feed pixel values 0..255 (the model rescales and "
                             "normalizes inside); grayscale X-rays" + (" tiled to 3 channels" if channels == 3 else ""),
            "resize": f"antialiased area resize to {height}x{width}",
        },
        thresholds, threshold_source,
        {"path": os.path.abspath(model_path), "sha256": source_sha, "name": trained.name,
         "anchor": getattr(trained, "anchor_mode", None), "dtype_policy": _training_policy(trained)},
    )
    record["graph"] = {"grayscale_stem": fold_note}
    record["parity_data"] = None if held_out is None else {"source": held_out["source"],
                                                            "images": len(held_out["images"])}
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".mamsf_export_", dir=out_dir)
    try:
        if "savedmodel" in formats:
            record["artifacts"][SAVEDMODEL_NAME] = _savedmodel(graph, out_dir, held_out, labels, thresholds, gates, log)
        if "tflite" in formats:
            batch_one = os.path.join(work, "batch1")
            serving_archive(graph, batch_size=1).write_out(batch_one, verbose=False)
            for variant in variants:
                record["artifacts"][tflite_name(variant)] = _tflite(
                    batch_one, variant, out_dir, calibration, io_type, held_out, labels, thresholds, gates, log)
        if "onnx" in formats:
            record["artifacts"][ONNX_NAME] = _onnx(graph, out_dir, held_out, labels, thresholds, gates, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if held_out is not None and held_out.get("cleanup"):
        shutil.rmtree(held_out["cleanup"], ignore_errors=True)
    for name, entry in record["artifacts"].items():
        _set_aside_if_failed(out_dir, name, entry, keep_failed, log)
    failed = [name for name, entry in record["artifacts"].items() if entry["status"] == "failed"]
    record = manifest.merge_existing(out_dir, record)
    manifest.write(out_dir, record)
    return dict(record, ok=not failed, failed=failed)


def failed_name(name):
    """`model_int8.tflite` -> `model_int8.FAILED.tflite`; `savedmodel` -> `savedmodel.FAILED`."""
    stem, extension = os.path.splitext(name)
    return f"{stem}.FAILED{extension}"


def _set_aside_if_failed(out_dir, name, entry, keep_failed, log):
    """Move a failed artifact off its normal name (renamed or deleted); clear a stale
    `.FAILED` copy of an artifact that now passed."""
    path, aside = os.path.join(out_dir, name), os.path.join(out_dir, failed_name(name))
    _remove(aside)
    if entry["status"] != "failed":
        return
    if not os.path.exists(path):  # the conversion itself failed: no file was written
        entry["file"] = None
        return
    if keep_failed:
        os.replace(path, aside)
        entry["file"] = failed_name(name)
        log(f"{name}: failed its gate; kept as {failed_name(name)}")
    else:
        _remove(path)
        entry["file"] = None
        log(f"{name}: failed its gate; deleted (--no-keep-failed)")


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _training_policy(model):
    """The policy the model was built with: its own for a config-driven model; for a pre-0.2
    file (whose functional model gets the global policy at load) the first mixed layer's."""
    if getattr(model, "build_arguments", None) is not None:
        return model.dtype_policy.name
    for layer in walk_layers(model):
        name = getattr(layer.dtype_policy, "name", "float32")
        if name.startswith("mixed_"):
            return name
    return "float32"


def _held_out(root, size, channels, count, seed):
    from keras_mamsf.export.calibration import load_images

    cleanup = None
    if root is None:
        from keras_mamsf.data.synth import write_synthetic

        cleanup = tempfile.mkdtemp(prefix="mamsf_parity_")
        root = os.path.join(cleanup, "synthetic")
        # The synthetic test split is about a quarter of the images.
        write_synthetic(root, images=max(4 * count, 32), size=max(size, 64), seed=seed)
    images, labels, source = load_images(root, "test", size, channels, count, seed + 1)
    if cleanup:
        source = f"synthetic ({len(images)} images drawn by mamsf synth; no --parity-data given)"
    return {"images": images, "labels": labels, "source": source, "cleanup": cleanup}


def _verify(path, variant, held_out, labels, thresholds, gates):
    if held_out is None:
        return {"status": "unverified"}
    outputs = load_runner(path).predict(held_out["images"])
    return parity.artifact_parity(variant, held_out["reference"], outputs, held_out["labels"], labels,
                                  [thresholds[label] for label in labels], gates)


def _entry(path, fmt, variant, check, extra=None):
    entry = {"format": fmt, "variant": variant, "file": os.path.basename(path.rstrip(os.sep))}
    entry["size_bytes"] = _size(path)
    if os.path.isfile(path):
        entry["sha256"] = manifest.sha256_of(path)
    entry.update(extra or {})
    entry["parity"] = check
    entry["status"] = "failed" if check.get("status") == "failed" else "ok"
    return entry


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _failure(fmt, variant, error):
    return {"format": fmt, "variant": variant, "status": "failed", "error": str(error).splitlines()[0]}


def _savedmodel(model, out_dir, held_out, labels, thresholds, gates, log):
    path = os.path.join(out_dir, SAVEDMODEL_NAME)
    with atomic_directory(path) as tmp:
        serving_archive(model).write_out(tmp, verbose=False)
    check = _verify(path, "savedmodel", held_out, labels, thresholds, gates)
    log(f"savedmodel: {_summary(check)}")
    return _entry(path, "savedmodel", "float32", check, {
        "signature": "serve", "input": {"name": INPUT_NAME, "shape": [None, *input_shape(model)], "dtype": "float32"}})


def _tflite(batch_one, variant, out_dir, calibration, io_type, held_out, labels, thresholds, gates, log):
    path = os.path.join(out_dir, tflite_name(variant))
    try:
        data = litert.convert(batch_one, variant, None if calibration is None else calibration["images"][:, None],
                              io_type)
    except litert.ConversionError as error:
        log(f"{tflite_name(variant)}: FAILED: {error}")
        return _failure("tflite", variant, error)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    check = _verify(path, variant, held_out, labels, thresholds, gates)
    tensors = _io_details(path)
    extra = {"signature": "serve", **tensors, "ops": edgetpu.opcodes(edgetpu.read_model(data))}
    if variant == "int8":
        extra["calibration"] = {"images": len(calibration["images"]), "source": calibration["source"]}
        extra["edgetpu"] = dict(edgetpu.check_edgetpu(data), compiler_command=edgetpu.compiler_command(
            os.path.basename(path)))
    log(f"{tflite_name(variant)}: {len(data) / 1e6:.2f} MB, {_summary(check)}")
    return _entry(path, "tflite", variant, check, extra)


def _io_details(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serve")

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                "quantization": None if np.dtype(detail["dtype"]).kind == "f" else
                {"scale": float(scale), "zero_point": int(zero_point)}}

    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    return {"input": dict(name=INPUT_NAME, **describe(inputs[INPUT_NAME])),
            "outputs": {name: describe(outputs[name]) for name in ("probs", "logits")}}


def _onnx(model, out_dir, held_out, labels, thresholds, gates, log):
    import onnx
    import tensorflow as tf
    import tf2onnx

    path = os.path.join(out_dir, ONNX_NAME)
    spec = tf.TensorSpec((None, *input_shape(model)), tf.float32, name=INPUT_NAME)
    try:
        # from_keras, not Keras' own ONNX export: that one turns the Normalization layer's
        # captured mean/variance into extra graph inputs, which onnxruntime then demands.
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=(spec,), opset=ONNX_OPSET)
        onnx.checker.check_model(proto)
    except Exception as error:
        log(f"{ONNX_NAME}: FAILED: {error}")
        return _failure("onnx", "float32", error)
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
    inputs = [i.name for i in proto.graph.input]
    check = _verify(path, "onnx", held_out, labels, thresholds, gates)
    log(f"{ONNX_NAME}: {_summary(check)}")
    return _entry(path, "onnx", "float32", check, {
        "opset": ONNX_OPSET, "inputs": inputs, "outputs": [o.name for o in proto.graph.output]})


def _summary(check):
    if check.get("status") == "unverified":
        return "not verified (--no-verify)"
    figures = check["paths"][check["use_output"]]
    text = (f"{check['status']}: max |dp| {figures['max_dp']:.2e}, macro AUC change "
            f"{-(figures['macro_auc_drop'] or 0.0):+.4f}, agreement {figures['threshold_agreement']:.4f}")
    if len(check["paths"]) > 1:
        text += f" (via {check['use_output']})"
    return text + ("" if not check["failures"] else f"; {'; '.join(check['failures'])}")
