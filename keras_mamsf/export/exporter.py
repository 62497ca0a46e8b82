"""`export_model`: one `.keras` file -> SavedModel / TFLite variants / ONNX, verified, with a manifest.

    report = export_model("runs/model.keras", "exports/", formats=("savedmodel", "tflite", "onnx"),
                          quantize=("float32", "int8"), calibration_data="data/ChestX-ray14")

Each format of `keras_mamsf.inference.formats` that export writes has its converter in `CONVERTERS`
(`converter(graph, out_dir, job) -> {artifact name: manifest entry}`).
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
import types

import numpy as np

from keras_mamsf.export import edgetpu, litert, manifest, parity
from keras_mamsf.export.folding import fold_grayscale_stem
from keras_mamsf.export.serving import serving_archive
from keras_mamsf.inference.formats import (
    EXPORT_FORMATS,
    ONNX,
    SAVEDMODEL,
    TFLITE,
    export_format,
    failed_name,
    load_runner,
)
from keras_mamsf.inference.graph import inference_model, input_shape
from keras_mamsf.inference.model_card import read_thresholds, run_thresholds, threshold_rule
from keras_mamsf.inference.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE
from keras_mamsf.utils import atomic_directory, atomic_path
from keras_mamsf.utils.digest import sha256_of
from keras_mamsf.utils.layers import walk_layers

FORMATS = tuple(fmt.name for fmt in EXPORT_FORMATS)
ONNX_OPSET = 17


def tflite_name(variant):
    return TFLITE.artifact_name(variant)


def parse_formats(text):
    """`"tflite,onnx"` -> the table's entries, in order, each once; a one-line error for a wrong name."""
    names = [name for name in str(text).split(",") if name.strip()]
    if not names:
        raise ValueError(f"--format: no format in {text!r}; choose from {','.join(FORMATS)}")
    try:
        return list(dict.fromkeys(export_format(name) for name in names))
    except ValueError as error:
        raise ValueError(f"--format: {error}") from None


def export_model(model_path, out_dir, formats=FORMATS, quantize=None, calibration_data=None, parity_data=None,
                 verify=True, io_type="uint8", thresholds_path=None, calibration_images=300, parity_images=200,
                 seed=0, gates=None, log=None, keep_failed=True, guard_path=None, ood_alpha=None):
    """Writes the artifacts, `labels.txt` and `manifest.json` into `out_dir`; returns the manifest
    with `ok` (every artifact converted and passed its gate) and `failed` (their names).

    An artifact that fails its parity gate never keeps its normal name (which a device build
    or `mamsf predict` would pick up): it is renamed `NAME.FAILED.EXT` (`keep_failed`, the
    default) or deleted; its manifest entry says `status: failed` and gives the `file`.

    Every artifact carries the out-of-distribution guard's `ood_score` output (`keras_mamsf.guard`): the
    guard at `guard_path`, else the one a `mamsf train` run wrote beside the model (`ood_guard.npz`), else
    one fitted now on `calibration_data` (or `parity_data`): train images, threshold on validation images at
    `ood_alpha`. With no data at all it is fitted on synthetic images and the manifest says it guards
    nothing real."""
    from keras_mamsf.labels import CHESTXRAY14_LABELS
    from keras_mamsf.models.io import load_model

    log = log or (lambda message: None)
    model_path = os.fspath(model_path)
    formats = list(dict.fromkeys(export_format(fmt) for fmt in formats))
    variants = list(quantize) if quantize is not None else litert.default_variants(bool(calibration_data))
    if TFLITE in formats and litert.INT8 in variants and not calibration_data:
        raise ValueError("int8 needs --calibration-data ROOT (an NIH-layout root or a folder of prepared shards)")
    trained = load_model(model_path, compile=False)
    source_sha = sha256_of(model_path)
    guard, guard_note = _guard(model_path, guard_path, calibration_data or parity_data, trained, ood_alpha, seed)
    log(f"OOD guard: {guard_note}")
    model = inference_model(trained, guard)  # the reference of every parity check
    graph, fold_note = fold_grayscale_stem(model)  # what the artifacts are converted from
    log(f"graph: {fold_note}")
    height, width, channels = input_shape(model)
    classes = int(model.output["probs"].shape[-1])
    if classes != len(CHESTXRAY14_LABELS):
        raise ValueError(f"{model_path}: {classes} outputs, but exports carry the {len(CHESTXRAY14_LABELS)} "
                         "ChestX-ray14 labels; train with num_classes=14")
    labels = list(CHESTXRAY14_LABELS)
    thresholds_path = thresholds_path or run_thresholds(model_path)  # a run folder's own, chosen on its val split
    thresholds, threshold_source = read_thresholds(thresholds_path, labels)

    calibration = None
    if TFLITE in formats and litert.INT8 in variants:
        from keras_mamsf.export.calibration import load_images
        from keras_mamsf.guard.ood_guard import calibration_anchors

        images, _, source = load_images(calibration_data, "train", height, channels, calibration_images, seed)
        anchors = calibration_anchors(height, channels, seed)
        images = np.concatenate([images, anchors])
        source += (f"; + {len(anchors)} images the OOD guard must flag (black, white, grey, 2 uniform noise), so "
                   "that its int8 ranges reach them")
        calibration = {"images": images, "source": source}
        log(f"calibration: {len(images)} images from {source}")
    held_out = _held_out(parity_data or calibration_data, height, channels, parity_images, seed) if verify else None
    rule = threshold_rule(thresholds_path)
    quantized = TFLITE in formats and any(variant != "float32" for variant in variants)
    own_val = _validation(calibration_data or parity_data, height, channels, log) if rule and quantized else None
    if held_out is not None:
        reference = model.predict(held_out["images"], verbose=0, batch_size=32)
        held_out["reference"], held_out["reference_ood"] = reference["probs"], reference["ood_score"]
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
    record["ood_guard"] = dict(guard.record(), fitted=guard_note)
    record["thresholds"]["rule"] = rule
    record["parity_data"] = None if held_out is None else {"source": held_out["source"],
                                                            "images": len(held_out["images"])}
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".mamsf_export_", dir=out_dir)
    job = types.SimpleNamespace(held_out=held_out, labels=labels, thresholds=thresholds, gates=gates, log=log,
                                ood_threshold=guard.threshold, rule=rule, own_val=own_val,
                                variants=variants, calibration=calibration, io_type=io_type, work=work)
    try:
        for fmt in formats:
            record["artifacts"].update(CONVERTERS[fmt](graph, out_dir, job))
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
    # The distinct images (rare classes' positives are repeated): what a bootstrap of these figures resamples.
    _, clusters = np.unique(images.reshape(len(images), -1), axis=0, return_inverse=True)
    return {"images": images, "labels": labels, "source": source, "cleanup": cleanup, "clusters": clusters.reshape(-1)}


def _guard(model_path, guard_path, data_root, model, alpha, seed):
    """`(OODGuard, one line on where it came from)` for `export_model`."""
    from keras_mamsf.data.sources import open_root
    from keras_mamsf.guard import ALPHA, OODGuard, guard_beside, guard_from_source

    size, channels = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[-1])
    if guard_path is not None:
        guard = OODGuard.load(guard_path)
        return guard, f"{guard_path} (threshold {guard.threshold:.3f})"
    beside = guard_beside(model_path)
    if beside is not None and alpha is None:
        return beside, f"the run's ood_guard.npz ({beside.source}; threshold {beside.threshold:.3f})"
    alpha = ALPHA if alpha is None else alpha
    if data_root is not None:
        guard = guard_from_source(open_root(data_root), size, channels, alpha=alpha, seed=seed, where=str(data_root))
        return guard, f"fitted now on {guard.source} (threshold {guard.threshold:.3f})"
    from keras_mamsf.data.synth import write_synthetic

    scratch = tempfile.mkdtemp(prefix="mamsf_guard_")
    try:
        root = os.path.join(scratch, "synthetic")
        write_synthetic(root, images=400, size=max(size, 64), seed=seed)
        guard = guard_from_source(open_root(root), size, channels, alpha=alpha, seed=seed,
                                  where="synthetic images (no --calibration-data): it guards nothing real")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return guard, f"fitted now on {guard.source}; pass --calibration-data ROOT for a real guard"


def _validation(root, size, channels, log):
    """`{"images", "labels", "source"}` of the val split of `root`, for thresholds chosen on a quantized file's own
    scores; None (said in the log) when there is no root or no val split."""
    if root is None:
        return None
    from keras_mamsf.data.sources import dataset_arrays, open_root

    source = open_root(root)
    try:
        images, labels = dataset_arrays(source.dataset("val", size, 64, channels=channels))
    except (KeyError, ValueError):
        log(f"thresholds: {root} has no val split; quantized files keep the float model's thresholds")
        return None
    return {"images": images, "labels": labels, "source": f"{root} ({source.describe('val', size)})"}


def _own_thresholds(path, name, use_output, job):
    """The thresholds of the quantized file at `path`, chosen by the run's rule on its own validation scores: the
    operating point must hold for the model the device runs, not only for the float model."""
    from keras_mamsf.inference.runners import scores_from_outputs
    from keras_mamsf.stats import thresholds as rules

    rule, val = job.rule, job.own_val
    scores = scores_from_outputs(load_runner(path).predict(val["images"]), use_output)
    record = rules.threshold_record(val["labels"], scores, job.labels, rule["rule"],
                                    rule.get("min_sensitivity") or rules.MIN_SENSITIVITY,
                                    rule.get("delta") or rules.DELTA)
    record["values"] = record.pop("thresholds")  # the manifest's name, as in its top-level "thresholds"
    record["chosen_on"] = f"{name}'s own scores on {len(val['images'])} val images of {val['source']}"
    return record


def _verify(path, gate, variant, job):
    if job.held_out is None:
        return {"status": "unverified"}
    outputs = load_runner(path).predict(job.held_out["images"])
    check = parity.artifact_parity(gate, variant, job.held_out["reference"], outputs, job.held_out["labels"],
                                   job.labels, [job.thresholds[label] for label in job.labels], job.gates,
                                   clusters=job.held_out["clusters"])
    if "ood_score" in outputs:
        check["ood_score"] = parity.ood_parity(job.held_out["reference_ood"], outputs["ood_score"], job.ood_threshold)
    return check


def _entry(path, fmt, variant, check, extra=None):
    entry = {"format": fmt.name, "variant": variant, "file": os.path.basename(path.rstrip(os.sep))}
    entry["size_bytes"] = _size(path)
    if os.path.isfile(path):
        entry["sha256"] = sha256_of(path)
    entry.update(extra or {})
    entry["parity"] = check
    entry["status"] = "failed" if check.get("status") == "failed" else "ok"
    return entry


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _failure(fmt, variant, error):
    return {"format": fmt.name, "variant": variant, "status": "failed", "error": str(error).splitlines()[0]}


def _savedmodel(model, out_dir, job):
    name = SAVEDMODEL.artifact_name()
    path = os.path.join(out_dir, name)
    with atomic_directory(path) as tmp:
        serving_archive(model).write_out(tmp, verbose=False)
    check = _verify(path, SAVEDMODEL.gate, "float32", job)
    job.log(f"{name}: {_summary(check)}")
    return {name: _entry(path, SAVEDMODEL, "float32", check, {
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "shape": [None, *input_shape(model)], "dtype": "float32"}})}


def _tflite_variants(model, out_dir, job):
    batch_one = os.path.join(job.work, "batch1")
    serving_archive(model, batch_size=1).write_out(batch_one, verbose=False)
    return {tflite_name(variant): _tflite(batch_one, variant, out_dir, job) for variant in job.variants}


def _tflite(batch_one, variant, out_dir, job):
    name = tflite_name(variant)
    path = os.path.join(out_dir, name)
    calibration = job.calibration
    try:
        data = litert.convert(batch_one, variant, None if calibration is None else calibration["images"][:, None],
                              job.io_type)
    except litert.ConversionError as error:
        job.log(f"{name}: FAILED: {error}")
        return _failure(TFLITE, variant, error)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    check = _verify(path, litert.VARIANTS[variant], variant, job)
    tensors = _io_details(path)
    extra = {"signature": SIGNATURE, **tensors, "ops": edgetpu.opcodes(edgetpu.read_model(data))}
    if variant != "float32" and job.own_val is not None:
        extra["thresholds"] = _own_thresholds(path, name, check.get("use_output", "probs"), job)
        job.log(f"{name}: thresholds chosen again on its own scores ({extra['thresholds']['chosen_on']})")
    if variant == litert.INT8:
        extra["calibration"] = {"images": len(calibration["images"]), "source": calibration["source"]}
        extra["edgetpu"] = dict(edgetpu.check_edgetpu(data), compiler_command=edgetpu.compiler_command(
            os.path.basename(path)))
    job.log(f"{name}: {len(data) / 1e6:.2f} MB, {_summary(check)}")
    return _entry(path, TFLITE, variant, check, extra)


def _io_details(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner(SIGNATURE)

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                "quantization": None if np.dtype(detail["dtype"]).kind == "f" else
                {"scale": float(scale), "zero_point": int(zero_point)}}

    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    return {"input": dict(name=INPUT_NAME, **describe(inputs[INPUT_NAME])),
            "outputs": {name: describe(outputs[name]) for name in OUTPUT_NAMES}}


def _onnx(model, out_dir, job):
    import onnx
    import tensorflow as tf
    import tf2onnx

    name = ONNX.artifact_name()
    path = os.path.join(out_dir, name)
    spec = tf.TensorSpec((None, *input_shape(model)), tf.float32, name=INPUT_NAME)
    try:
        # from_keras, not Keras' own ONNX export: that one turns the Normalization layer's
        # captured mean/variance into extra graph inputs, which onnxruntime then demands.
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=(spec,), opset=ONNX_OPSET)
        onnx.checker.check_model(proto)
    except Exception as error:
        job.log(f"{name}: FAILED: {error}")
        return {name: _failure(ONNX, "float32", error)}
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
    inputs = [i.name for i in proto.graph.input]
    check = _verify(path, ONNX.gate, "float32", job)
    job.log(f"{name}: {_summary(check)}")
    return {name: _entry(path, ONNX, "float32", check, {
        "opset": ONNX_OPSET, "inputs": inputs, "outputs": [o.name for o in proto.graph.output]})}


def _summary(check):
    if check.get("status") == "unverified":
        return "not verified (--no-verify)"
    figures = check["paths"][check["use_output"]]
    text = (f"{check['status']}: max |dp| {figures['max_dp']:.2e}, macro AUC change "
            f"{-(figures['macro_auc_drop'] or 0.0):+.4f}, agreement {figures['threshold_agreement']:.4f}")
    if len(check["paths"]) > 1:
        text += f" (via {check['use_output']})"
    if "noninferiority" in check:
        test = check["noninferiority"]
        judged = [label for label, entry in test["per_class"].items() if entry["verdict"] != "not judged"]
        text += (f"; non-inferiority (margin {test['margin']:g}, {len(judged)} classes with >= "
                 f"{test['min_positives']} positives): macro {test['macro']['verdict']}"
                 + "".join(f", {label} {test['per_class'][label]['verdict']}" for label in judged
                           if test["per_class"][label]["verdict"] != "pass"))
    if "ood_score" in check:
        ood = check["ood_score"]
        spearman = "n/a" if ood["spearman"] is None else f"{ood['spearman']:.4f}"
        text += f"; ood_score Spearman {spearman}, verdicts agree {ood['verdict_agreement']:.4f}"
    return text + ("" if not check["failures"] else f"; {'; '.join(check['failures'])}")


# The converter of each exported format of the table (`keras_mamsf.inference.formats`).
CONVERTERS = {SAVEDMODEL: _savedmodel, TFLITE: _tflite_variants, ONNX: _onnx}
