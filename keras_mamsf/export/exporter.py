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
unless `verify=False`. The held-out images are the validation split of `parity_data` (or of
`calibration_data`), split as the run that wrote the model split it (its config.toml), patient ids
known; with neither, a small synthetic NIH-layout set is drawn for the check and the manifest says
so. float32 artifacts must match (max |dp| <= 1e-4); quantized ones must be shown non-inferior in
AUC (`parity`, `stats.noninferiority`). The int8 files are converted from the same graph with its
kernels rounded to the converter's int8 grid with error feedback (`weight_rounding`; the reference of
their gate stays the float model). When full int8 is not non-inferior, a mixed int8 file keeps the ops
that lose the most in float until it is (`litert.mixed_int8`).
"""

import os
import shutil
import tempfile
import types

import numpy as np

from keras_mamsf.data.sources import open_root
from keras_mamsf.export import edgetpu, litert, manifest, parity, weight_rounding
from keras_mamsf.export.card import embed_card
from keras_mamsf.export.folding import fold_grayscale_stem
from keras_mamsf.export.serving import serving_archive
from keras_mamsf.inference.card import CARD_NAME, DIGEST_FIELD
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
from keras_mamsf.inference.model_card import (
    card_from_manifest,
    read_thresholds,
    run_initial_weights,
    run_split,
    run_thresholds,
    threshold_rule,
    uses_test_time_flip,
)
from keras_mamsf.inference.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE
from keras_mamsf.utils import atomic_directory, atomic_path
from keras_mamsf.utils.digest import sha256_of
from keras_mamsf.utils.layers import walk_layers

FORMATS = tuple(fmt.name for fmt in EXPORT_FORMATS)
ONNX_OPSET = 17


# The mixed file is the fallback that stays close to the float model: at most this share of its calls may flip.
MIXED_MAX_FLIPPED = 0.02


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
                 verify=True, io_type="uint8", thresholds_path=None, calibration_images=300, parity_images=None,
                 seed=0, gates=None, log=None, keep_failed=True, guard_path=None, ood_alpha=None, mixed=True,
                 int8_rounding="gptq", mixed_max_flipped=MIXED_MAX_FLIPPED):
    """Writes the artifacts, `labels.txt` and `manifest.json` into `out_dir`; returns the manifest
    with `ok` (every artifact converted and passed its gate) and `failed` (their names).

    An artifact that fails its parity gate never keeps its normal name (which a device build
    or `mamsf predict` would pick up): it is renamed `NAME.FAILED.EXT` (`keep_failed`, the
    default) or deleted; its manifest entry says `status: failed` and gives the `file`.

    Every artifact carries the out-of-distribution guard's `ood_score` output (`keras_mamsf.guard`): the
    guard at `guard_path`, else the one a `mamsf train` run wrote beside the model (`ood_guard.npz`), else
    one fitted now on `calibration_data` (or `parity_data`): train images, threshold on validation images at
    `ood_alpha`. With no data at all it is fitted on synthetic images and the manifest says it guards
    nothing real.

    `parity_images`: at most this many validation images (a seeded sample; None: all). `gates`: the bounds
    of `gates.GATES`. `mixed`: when full int8 fails its gate, also write `model_int8_mixed.tflite`, with the
    fewest ops in float that pass the gate and whose calls at its thresholds differ from the float model's on at
    most `mixed_max_flipped` of the parity images per screened class, on average (1: the gate alone).
    `int8_rounding`: how the int8 files' weights are rounded: "gptq" (default; with error feedback on the
    calibration films, `weight_rounding.rounded_for_int8`) or "nearest" (the converter's own rounding)."""
    from keras_mamsf.labels import CHESTXRAY14_LABELS
    from keras_mamsf.models.io import load_model

    log = log or (lambda message: None)
    model_path = os.fspath(model_path)
    formats = list(dict.fromkeys(export_format(fmt) for fmt in formats))
    variants = list(quantize) if quantize is not None else litert.default_variants(bool(calibration_data))
    if TFLITE in formats and litert.INT8 in variants and not calibration_data:
        raise ValueError("int8 needs --calibration-data ROOT (an NIH-layout root or a folder of prepared shards)")
    if int8_rounding not in weight_rounding.METHODS:
        raise ValueError(f"int8 rounding must be one of {', '.join(weight_rounding.METHODS)}, got {int8_rounding!r}")
    trained = load_model(model_path, compile=False)
    source_sha = sha256_of(model_path)
    split = run_split(model_path)  # the run's own val split is the parity set, and its train split calibrates
    sources = {root: open_root(root, split=split) for root in dict.fromkeys((calibration_data, parity_data)) if root}
    guard, guard_note = _guard(model_path, guard_path, calibration_data or parity_data, trained, ood_alpha, seed,
                               sources)
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
        from keras_mamsf.export.calibration import int8_calibration

        calibration = int8_calibration(calibration_data, height, channels, calibration_images, seed,
                                       source=sources[calibration_data])
        log(f"calibration: {len(calibration['images'])} images from {calibration['source']}")
    held_out = None
    if verify:
        root = parity_data or calibration_data
        held_out = _parity_set(root, sources.get(root), height, channels, parity_images, seed)
    rule = threshold_rule(thresholds_path)
    flip = uses_test_time_flip(model_path)  # the run scored (and chose its thresholds) over each image and its mirror
    if held_out is not None:
        # parity compares one pass; the operating decisions compare scores made as the device must make them
        held_out["reference_scores"], reference = _reference_scores(model, held_out["images"], flip)
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
         "anchor": getattr(trained, "anchor_mode", None), "dtype_policy": _training_policy(trained),
         "initial_weights": run_initial_weights(model_path)},
    )
    record["graph"] = {"grayscale_stem": fold_note}
    record["ood_guard"] = dict(guard.record(), fitted=guard_note)
    record["thresholds"]["rule"] = rule
    record["test_time_flip"] = flip
    record["parity_data"] = None if held_out is None else {"source": held_out["source"],
                                                            "images": len(held_out["images"])}
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".mamsf_export_", dir=out_dir)
    job = types.SimpleNamespace(held_out=held_out, labels=labels, thresholds=thresholds, gates=gates, log=log,
                                ood_threshold=guard.threshold, rule=rule, variants=variants, mixed=mixed,
                                calibration=calibration, io_type=io_type, work=work, seed=seed, test_time_flip=flip,
                                int8_rounding=int8_rounding, int8_weights=None, mixed_max_flipped=mixed_max_flipped)
    try:
        for fmt in formats:
            record["artifacts"].update(CONVERTERS[fmt](graph, out_dir, job))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for entry in record["artifacts"].values():
        _embed_card(out_dir, entry, record)
    for name, entry in record["artifacts"].items():
        _set_aside_if_failed(out_dir, name, entry, keep_failed, log)
    failed = [name for name, entry in record["artifacts"].items() if entry["status"] == "failed"]
    if any("noninferiority" in (entry.get("parity") or {}) for entry in record["artifacts"].values()):
        log("\n".join(parity.gate_table(record)))
    record = manifest.merge_existing(out_dir, record)
    manifest.write(out_dir, record)
    return dict(record, ok=not failed, failed=failed)


def _embed_card(out_dir, entry, record):
    """Puts the artifact's model card (`card_from_manifest`: labels, thresholds, the guard's threshold, its own
    status) into the file itself, so that a device that receives only the file still has it; the entry's SHA-256 and
    size become the file's with its card. A failed artifact gets one too (it says so)."""
    path = os.path.join(out_dir, entry["file"]) if entry.get("file") else None
    if path is None or not os.path.exists(path):
        return
    card = embed_card(path, card_from_manifest(record, entry))
    entry["card"] = {"name": CARD_NAME, DIGEST_FIELD: card[DIGEST_FIELD]}
    entry["size_bytes"] = _size(path)
    if os.path.isfile(path):
        entry["sha256"] = sha256_of(path)


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


def _parity_set(root, source, size, channels, count, seed):
    """`{"images", "labels", "patient_id", "source", "real"}`: the validation split of `source` (`root` opened),
    or of a small synthetic set drawn now when there is no root; at most `count` images (a seeded sample)."""
    from keras_mamsf.data.sources import dataset_arrays, sample_indices

    scratch = None
    if source is None:
        from keras_mamsf.data.synth import write_synthetic

        scratch = tempfile.mkdtemp(prefix="mamsf_parity_")
        root = os.path.join(scratch, "synthetic")
        write_synthetic(root, images=400, size=max(size, 64), seed=seed)
        source = open_root(root)
    try:
        _, patients = source.ids("val", size)
        chosen = None if count is None or count >= len(patients) else sample_indices(count, len(patients), seed)
        images, labels = dataset_arrays(source.dataset("val", size, 64, channels=channels, indices=chosen))
    except (KeyError, ValueError) as error:
        raise ValueError(f"{root}: no validation split for the parity check ({error}); pass --parity-data ROOT "
                         "with one, or --no-verify") from None
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    patients = np.asarray(patients) if chosen is None else np.asarray(patients)[chosen]
    described = (f"synthetic ({len(images)} val images drawn by mamsf synth; no --parity-data given)" if scratch
                 else f"{root} ({source.describe('val', size)}: {len(images)} images, {len(set(patients))} patients)")
    return {"images": images, "labels": labels, "patient_id": patients, "source": described, "real": not scratch}


def _guard(model_path, guard_path, data_root, model, alpha, seed, sources):
    """`(OODGuard, one line on where it came from)` for `export_model` (`sources`: the data roots, opened)."""
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
        guard = guard_from_source(sources[data_root], size, channels, alpha=alpha, seed=seed, where=str(data_root),
                                  model=model)
        return guard, f"fitted now on {guard.source} (threshold {guard.threshold:.3f})"
    from keras_mamsf.data.synth import write_synthetic

    scratch = tempfile.mkdtemp(prefix="mamsf_guard_")
    try:
        root = os.path.join(scratch, "synthetic")
        write_synthetic(root, images=400, size=max(size, 64), seed=seed)
        guard = guard_from_source(open_root(root), size, channels, alpha=alpha, seed=seed,
                                  where="synthetic images (no --calibration-data): it guards nothing real", model=model)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return guard, f"fitted now on {guard.source}; pass --calibration-data ROOT for a real guard"


def _own_thresholds(name, scores, job):
    """The thresholds of the quantized file `name`, chosen by the run's rule on its own `scores` of the validation
    images (the operating point must hold for the model the device runs, not only for the float model), each set
    back to the float model's wherever the file meets the rule there (`thresholds.keep_reference_where_met`)."""
    from keras_mamsf.stats import thresholds as rules

    rule, val = job.rule, job.held_out
    delta = rule.get("delta") or rules.DELTA
    record = rules.threshold_record(val["labels"], scores, job.labels, rule["rule"],
                                    rule.get("min_sensitivity") or rules.MIN_SENSITIVITY, delta)
    record = rules.keep_reference_where_met(record, val["labels"], scores, job.labels, job.thresholds, delta)
    record["values"] = record.pop("thresholds")  # the manifest's name, as in its top-level "thresholds"
    record["chosen_on"] = f"{name}'s own scores on {len(val['images'])} val images of {val['source']}"
    return record


def _verify(path, gate, variant, job):
    """`(parity entry, the artifact's scores through its chosen output)` on the parity set: the parity of one
    pass, the scores as the model card says they are made (flip-averaged with `test_time_flip`)."""
    from keras_mamsf.inference.runners import predict_scores

    if job.held_out is None:
        return {"status": "unverified"}, None
    runner = load_runner(path)
    outputs = runner.predict(job.held_out["images"])
    check = parity.artifact_parity(gate, variant, job.held_out["reference"], outputs, job.held_out["labels"],
                                   job.labels, [job.thresholds[label] for label in job.labels], job.gates,
                                   patient_id=job.held_out["patient_id"])
    if "ood_score" in outputs:
        check["ood_score"] = parity.ood_parity(job.held_out["reference_ood"], outputs["ood_score"], job.ood_threshold)
    return check, predict_scores(runner, job.held_out["images"], check["use_output"], job.test_time_flip, outputs)[0]


def _reference_scores(model, images, flip):
    """`(scores, outputs)` of the Keras model on the parity images: the scores flip-averaged when `flip`
    (`runners.predict_scores`), the outputs of one pass."""
    from keras_mamsf.inference.runners import predict_scores

    reference = types.SimpleNamespace(predict=lambda batch: model.predict(batch, verbose=0, batch_size=32))
    return predict_scores(reference, images, test_time_flip=flip)


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
    check, _ = _verify(path, SAVEDMODEL.gate, "float32", job)
    job.log(f"{name}: {_summary(check)}")
    return {name: _entry(path, SAVEDMODEL, "float32", check, {
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "shape": [None, *input_shape(model)], "dtype": "float32"}})}


def _tflite_variants(model, out_dir, job):
    batch_one = os.path.join(job.work, "batch1")
    serving_archive(model, batch_size=1).write_out(batch_one, verbose=False)
    int8_source = batch_one
    if litert.INT8 in job.variants:
        job.int8_weights = {"rounding": "nearest"}  # the converter's own
        if job.int8_rounding == "gptq":
            int8_source = os.path.join(job.work, "batch1_int8_weights")
            films = job.calibration["images"][:job.calibration["films"]]
            with weight_rounding.rounded_for_int8(model, films) as record:
                serving_archive(model, batch_size=1).write_out(int8_source, verbose=False)
            job.int8_weights = record
            job.log(f"int8 weights: {record['kernels']} kernels rounded with error feedback (GPTQ) on "
                    f"{record['images']} calibration films, {record['seconds']:.0f} s")
    entries = {tflite_name(variant): _tflite(int8_source if variant == litert.INT8 else batch_one, variant, out_dir,
                                             job)
               for variant in job.variants}
    full = entries.get(tflite_name(litert.INT8))
    if job.mixed and full is not None and full["status"] == "failed" and job.held_out is not None:
        entries[tflite_name(litert.MIXED)] = _tflite(int8_source, litert.MIXED, out_dir, job)
    return entries


def _tflite(batch_one, variant, out_dir, job):
    name = tflite_name(variant)
    path = os.path.join(out_dir, name)
    calibration = job.calibration
    representative = None if calibration is None else calibration["images"][:, None]
    search = None
    try:
        if variant == litert.MIXED:
            job.log(f"{name}: full int8 failed its gate; keeping its worst ops in float until the file passes the gate "
                    "and keeps the float model's calls")
            data, search = litert.mixed_int8(batch_one, representative, lambda data: _passes(data, name, job),
                                             log=job.log)
        else:
            data = litert.convert(batch_one, variant, representative, job.io_type)
    except litert.ConversionError as error:
        job.log(f"{name}: FAILED: {error}")
        return _failure(TFLITE, variant, error)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    check, scores = _verify(path, litert.GATE_OF[variant], variant, job)
    tensors = _io_details(path)
    extra = {"signature": SIGNATURE, **tensors, "ops": edgetpu.opcodes(edgetpu.read_model(data))}
    if search is not None:
        extra["mixed"] = dict(search, max_flipped=job.mixed_max_flipped)
    chosen = _deployed_thresholds(name, scores, job) if variant != "float32" else None
    if chosen is not None:
        extra["thresholds"] = chosen
        kept, screened = chosen["kept_reference"], sum(value is not None for value in chosen["values"].values())
        job.log(f"{name}: thresholds chosen again on its own scores ({chosen['chosen_on']}); the float "
                f"model's kept where the file meets the rule there: {len(kept)} of {screened} screened classes")
    if scores is not None and check.get("noninferiority"):
        own = chosen["values"] if chosen is not None else job.thresholds
        check["decisions"] = parity.decision_figures(
            job.held_out["labels"], job.held_out["reference_scores"], scores, job.labels,
            [job.thresholds[label] for label in job.labels], [own[label] for label in job.labels],
            job.held_out["patient_id"], seed=job.seed)
    if variant in (litert.INT8, litert.MIXED):
        extra["calibration"] = {"images": len(calibration["images"]), "source": calibration["source"]}
        extra["int8_weights"] = job.int8_weights
    if variant == litert.INT8:  # the mixed file keeps float ops: CPU only
        extra["edgetpu"] = dict(edgetpu.check_edgetpu(data), compiler_command=edgetpu.compiler_command(
            os.path.basename(path)))
    job.log(f"{name}: {len(data) / 1e6:.2f} MB, {_summary(check)}")
    return _entry(path, TFLITE, variant, check, extra)


def _passes(data, name, job):
    """Whether a candidate TFLite model (bytes) passes the quantized gate on the parity set and, at the thresholds
    it would be deployed with, flips at most `job.mixed_max_flipped` of the float model's calls per screened class
    on average (the mixed search)."""
    path = os.path.join(job.work, f"candidate_{name}")
    with open(path, "wb") as handle:
        handle.write(data)
    check, scores = _verify(path, litert.GATE_OF[litert.MIXED], litert.MIXED, job)
    if check["status"] != "passed":
        return False
    if job.mixed_max_flipped >= 1:  # the gate alone: no share of flipped calls can exceed it
        return True
    flipped = _mean_flipped(name, scores, job)
    if flipped is not None and flipped > job.mixed_max_flipped:
        job.log(f"{name}: the candidate passes the gate, but its calls flip on {flipped:.2%} of the val images per "
                f"screened class (at most {job.mixed_max_flipped:.2%})")
        return False
    return True


def _deployed_thresholds(name, scores, job):
    """The thresholds record a quantized file `name` is deployed with (`_own_thresholds`), or None where it keeps
    the float model's: no rule to choose them by, no scores, or synthetic parity images."""
    if job.rule and scores is not None and job.held_out["real"]:
        return _own_thresholds(name, scores, job)
    return None


def _mean_flipped(name, scores, job):
    """The mean over the screened classes of the share of parity images a quantized file calls differently from
    the float model, each at its deployed thresholds (`_deployed_thresholds`); None where no class is screened."""
    chosen = _deployed_thresholds(name, scores, job)
    own = chosen["values"] if chosen is not None else job.thresholds
    flipped = parity.flipped_calls(job.held_out["reference_scores"], scores, job.labels,
                                   [job.thresholds[label] for label in job.labels],
                                   [own[label] for label in job.labels])
    return float(np.mean(list(flipped.values()))) if flipped else None


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
    check, _ = _verify(path, ONNX.gate, "float32", job)
    job.log(f"{name}: {_summary(check)}")
    return {name: _entry(path, ONNX, "float32", check, {
        "opset": ONNX_OPSET, "inputs": inputs, "outputs": [o.name for o in proto.graph.output]})}


def _summary(check):
    if check.get("status") == "unverified":
        return "not verified (--no-verify)"
    figures = check["paths"][check["use_output"]]
    text = f"{check['status']}: max |dp| {figures['max_dp']:.2e}, agreement {figures['threshold_agreement']:.4f}"
    if len(check["paths"]) > 1:
        text += f" (via {check['use_output']})"
    if "noninferiority" in check:
        macro = check["noninferiority"]["macro"]
        text += "; macro AUC change " + ("not judged" if macro["delta"] is None else
                                         f"{macro['delta']:+.4f} (lower bound {macro['bounds'][0]:+.4f})")
    if "ood_score" in check:
        ood = check["ood_score"]
        spearman = "n/a" if ood["spearman"] is None else f"{ood['spearman']:.4f}"
        text += f"; ood_score Spearman {spearman}, verdicts agree {ood['verdict_agreement']:.4f}"
    return text + ("" if not check["failures"] else f"; {check['failures'][0]}")


# The converter of each exported format of the table (`keras_mamsf.inference.formats`).
CONVERTERS = {SAVEDMODEL: _savedmodel, TFLITE: _tflite_variants, ONNX: _onnx}
