"""TFLite (LiteRT) conversion: float32, float16, dynamic-range and full-integer int8.

The converter reads a batch-1 SavedModel written from the float32 inference graph (what
Keras' own LiteRT exporter does; `TFLiteConverter.from_keras_model` silently falls back to a
legacy tracer on Keras 3). The op set is always given explicitly: TFLITE_BUILTINS for the
float variants and TFLITE_BUILTINS_INT8 for int8, never SELECT_TF_OPS, so a graph that would
need flex ops fails to convert instead of shipping a file the Android LiteRT runtime and the
Edge TPU cannot run.

int8: weights int8 (per-axis), activations int8 calibrated on `representative` images, input and
output `uint8` (Coral's convention; or `int8`). The file has two outputs: `probs`, whose sigmoid is
fixed by the int8 spec to 256 levels (scale 1/256), and `logits`, for a sigmoid on the host in
float: finer probabilities for rare findings. Parity measures both.
"""

import numpy as np

# The TFLite variants and the parity gate each is held to ("exact": max |dp|; "quantized": also
# judged on ranking, see parity.GATES). The default export writes all but int8 unless given
# calibration images.
VARIANTS = {"float32": "exact", "float16": "quantized", "dynamic": "quantized", "int8": "quantized"}
INT8 = "int8"
# Written only when full int8 fails its gate (and `mixed` is on): int8 with the ops that lose the most kept in
# float, float32 input and output; for Android / CPU (an Edge TPU runs full int8 only).
MIXED = "int8_mixed"
GATE_OF = dict(VARIANTS, **{MIXED: "quantized"})
IO_TYPES = ("uint8", "int8")


def default_variants(calibrated):
    """The variants `mamsf export` writes without `--quantize`: int8 only with calibration images."""
    return [variant for variant in VARIANTS if calibrated or variant != INT8]


class ConversionError(RuntimeError):
    """The converter refused the graph (typically: an op with no builtin kernel)."""


def parse_variants(text):
    variants = [v.strip() for v in str(text).split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--quantize: unknown variant(s) {unknown or text!r}; choose from {','.join(VARIANTS)}")
    return list(dict.fromkeys(variants))


def convert(saved_model_dir, variant, representative=None, io_type="uint8"):
    """Bytes of the `.tflite` file for `variant`; `representative` (an iterable of float32
    (1, H, W, C) arrays, 0..255) is required for int8."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}")
    converter = _converter(saved_model_dir)
    if variant in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None:
            raise ValueError("int8 needs representative images: pass --calibration-data ROOT")
        if io_type not in IO_TYPES:
            raise ValueError(f"int8 input/output type must be one of {IO_TYPES}, got {io_type!r}")
        converter.representative_dataset = _dataset(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    import warnings

    try:
        with warnings.catch_warnings():
            # The converter calibrates with TF's own (deprecated) interpreter and says so.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            return converter.convert()
    except Exception as error:  # the converter raises ConverterError and friends with long logs
        raise ConversionError(f"TFLite {variant} conversion failed: {_first_reason(error)}") from None


def _converter(saved_model_dir):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _dataset(representative):
    images = [np.asarray(image, dtype="float32") for image in representative]
    if not images:
        raise ValueError("int8 calibration got no images")

    def dataset():
        for image in images:
            yield {"image": image}

    return dataset


def noise_to_signal(float_value, quantized_value, scale, zero_point):
    """An op's int8 output error relative to its own spread: RMS(dequantized - float) / SD(float), on one image.
    (The debugger's default, RMS error in quantization steps, is about 0.3 for every op: rounding; what loses a
    model its ranking is an op whose steps are coarse against the values it must tell apart.)
    NaN when the float values are not all finite (the debugger's float pass gave NaN for a swish block of the
    demo's B0): there is nothing to measure."""
    reference = np.asarray(float_value)
    if not np.all(np.isfinite(reference)):
        return float("nan")
    reference = reference.astype("float64")
    dequantized = (np.asarray(quantized_value).astype("int32") - zero_point) * float(scale)
    spread = reference.std()
    return float(np.sqrt(np.mean((dequantized - reference) ** 2)) / spread) if spread > 0 else 0.0


def mixed_int8(saved_model_dir, representative, passes, debug_images=16, max_trials=12, log=None, skip=("ood_score",)):
    """int8 with the fewest ops kept in float that `passes(model_bytes) -> bool` accepts (the exporter's: the parity
    gate, and the calls kept close to the float model's).

    The ops are ranked by what each does to the model's outputs when it alone is int8 (`output_error_alone`, on
    `debug_images` calibration images; ops whose names contain a `skip` part, such as the OOD guard's, stay int8),
    and the n worst are kept in float (TFLite's QuantizationDebugger's denylisting, on one calibration): n = 1, 2,
    4, ... until `passes` accepts, then bisected down to the smallest accepted n. One op at a time would take
    hundreds of conversions when the error is spread over the network; doubling then bisecting takes about 2 log2(n).
    At least one ranked op stays int8: every op in float is the float model, not a mixed int8 file.

    Why not rank by each op's own error (the debugger's per-layer figure, `noise_to_signal`, kept in the record):
    an early op's int8 output can be fine against its own spread and still move the logits most, because the
    network amplifies what reaches its early feature maps. On the pretrained recipe's Lite0 (2026-12-07) the stem's
    and block 1a's outputs had the smallest own error of all 69 ops (0.003) and the largest effect alone (0.063 of
    the logits' spread): ranked by own error, the search needed 64 of 69 ops in float to pass the gate.

    Returns `(model bytes, record)`: record has "passed", "float_ops" (names), "ranking" (the 20 worst ops with
    both figures), "unmeasured", "debug_images" and "trials" (n, passed); without a passing n, the last (largest)
    one tried.
    """
    log = log or (lambda message: None)
    debugger, rows, debugged = _debugger(saved_model_dir, representative, debug_images)
    rows = [row for row in rows if not any(part in row["tensor_name"] for part in skip)]
    names = list(dict.fromkeys(row["tensor_name"] for row in rows))
    own = {row["tensor_name"]: _figure(row) for row in rows}
    images = [np.asarray(image, dtype="float32") for image in list(representative)[:debug_images]]
    effect = output_error_alone(debugger, names, convert(saved_model_dir, "float32"), images, skip)
    ranking, unmeasured = rank_ops(effect)
    if unmeasured:
        log(f"mixed int8: {len(unmeasured)} op(s) not measured (the outputs are not finite), ranked last: "
            f"{', '.join(unmeasured[:3])}{' ...' if len(unmeasured) > 3 else ''}")
    # Only two models can be returned, so only two are held (each up to the float model's size): the smallest
    # passing count's and the largest failing one's. A new pass is always below the last (bisection lowers it), a
    # new failure always above the last, so each replaces its predecessor.
    trials, kept = [], {}

    def attempt(count):
        data = _with_float_ops(debugger, ranking[:count])
        ok = bool(passes(data))
        trials.append({"float_ops": count, "passed": ok})
        kept[ok] = data
        log(f"mixed int8: {count} of {len(ranking)} ops in float: {'accepted' if ok else 'not accepted'}")
        return ok

    most = len(ranking) - 1
    low, high, count = 0, None, 1  # low: the largest count known to fail; high: the smallest known to pass
    while count <= most and len(trials) < max_trials:
        if attempt(count):
            high = count
            break
        low, count = count, min(2 * count, most) if count < most else count + 1
    while high is not None and high - low > 1 and len(trials) < max_trials:
        middle = (low + high) // 2
        if attempt(middle):
            high = middle
        else:
            low = middle
    chosen = high if high is not None else low
    op_of = {row["tensor_name"]: row["op_name"] for row in rows}
    record = {"passed": high is not None, "float_ops": ranking[:chosen], "ops_ranked": len(ranking),
              "ranked_by": "output error with the op alone in int8 (RMS change over SD, the better output)",
              "ranking": [{"op": op_of[name], "tensor": name, "output_error": _finite(effect[name]),
                           "noise_to_signal": own[name]} for name in ranking[:20]],
              "unmeasured": unmeasured, "debug_images": debugged, "trials": trials}
    return kept[high is not None], record


def output_error_alone(debugger, names, float_model, images, skip=("ood_score",)):
    """`{name: figure}`: per op, how far the outputs move when that op alone is int8 (every other op of `names` in
    float), against `float_model` (bytes of the float32 conversion) on `images` ((1, H, W, C) arrays).

    An output's figure is the RMS change of each channel over its SD across `images`, averaged over channels
    (a constant channel is left out); the op's figure is the smallest over the outputs whose names contain no
    `skip` part: the gate reads an int8 file through its better output (`probs`, or `logits` with the sigmoid on
    the host), so an op that only coarsens the other one costs nothing. NaN when no output is finite."""
    reference = _outputs(float_model, images, skip)
    figures = {}
    for name in names:
        candidate = _outputs(_with_float_ops(debugger, [other for other in names if other != name]), images, skip)
        figures[name] = min((_relative_rms(candidate[key], reference[key]) for key in reference), default=np.nan)
    return figures


def _outputs(data, images, skip):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner("serve")
    results = [runner(image=image) for image in images]
    return {key: np.concatenate([np.asarray(result[key], "float64").reshape(1, -1) for result in results])
            for key in results[0] if not any(part in key for part in skip)}


def _relative_rms(candidate, reference):
    spread = reference.std(0)
    varying = spread > 0
    if not np.all(np.isfinite(candidate)) or not varying.any():
        return np.nan
    return float(np.mean(np.sqrt(((candidate - reference) ** 2).mean(0))[varying] / spread[varying]))


def int8_by_part(saved_model_dir, representative, part_of, debug_images=8):
    """Int8 models of `saved_model_dir` quantized one part at a time: where a model's int8 error comes from.

    `part_of(op_name) -> str or None` names the part of each quantized op (TFLite's op names carry the Keras
    layer names); None keeps the op int8 in every model. Yields `(name, int8 ops, model bytes)`: "all" (every op
    int8, as `convert` makes it, with float32 input and output), "weights only" (every op with a part kept in
    float: what the weights alone cost, when the SavedModel's kernels already sit on the int8 grid, as
    `weight_rounding.rounded_for_int8` leaves them), then each part alone in int8. One calibration on
    `representative` serves every model (the QuantizationDebugger's denylist, as `mixed_int8` uses it).
    """
    debugger, rows, _ = _debugger(saved_model_dir, representative, debug_images)
    names = list(dict.fromkeys(row["tensor_name"] for row in rows))
    parts = {}
    for name in names:
        parts.setdefault(part_of(name), []).append(name)
    parted = [name for part, members in parts.items() if part is not None for name in members]
    yield "all", len(names), _with_float_ops(debugger, [])
    # the debugger refuses to keep every op in float: that model is the float32 conversion
    everything = len(parted) == len(names)
    yield "weights only", len(names) - len(parted), (convert(saved_model_dir, "float32") if everything
                                                     else _with_float_ops(debugger, parted))
    for part, members in parts.items():
        if part is not None:
            yield part, len(members), _with_float_ops(debugger, [name for name in parted if name not in members])


def _debugger(saved_model_dir, representative, debug_images):
    """`(debugger, rows, images debugged)`: TFLite's QuantizationDebugger over the int8 conversion of
    `saved_model_dir` calibrated on `representative`, run on its first `debug_images` images, and its per-op rows
    (dicts: "op_name", "tensor_name", "noise_to_signal", ...)."""
    import csv
    import io
    import warnings

    import tensorflow as tf

    converter = _converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _dataset(representative)
    debug = [np.asarray(image, dtype="float32") for image in list(representative)[:debug_images]]
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={
        "noise_to_signal": noise_to_signal})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        # the debugger averages each op's figures with nanmean: an op `noise_to_signal` cannot measure (NaN on
        # every image) makes it warn; `mixed_int8` names such ops instead
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([image] for image in debug), debug_options=options)
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    return debugger, list(csv.DictReader(dump)), len(debug)


def _with_float_ops(debugger, names):
    """Bytes of the debugger's int8 model with the ops `names` kept in float (float32 input and output)."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(names))
        return debugger.get_nondebug_quantized_model()


def rank_ops(figures):
    """`(names, unmeasured)`: the ops of `{name: figure}` worst (largest) first, those without a figure (NaN: nothing
    to measure) last; `unmeasured` names the latter. Ties keep their order (the graph's)."""
    unmeasured = [name for name, figure in figures.items() if _finite(figure) is None]
    names = sorted(figures, key=lambda name: (_finite(figures[name]) is None, -(_finite(figures[name]) or 0.0)))
    return names, unmeasured


def _figure(row):
    """A debugger row's noise-to-signal ratio, None where it is NaN."""
    return _finite(float(row["noise_to_signal"]))


def _finite(value):
    """`value`, or None where it is NaN (a manifest is JSON: no NaN in it)."""
    return None if value is None or np.isnan(value) else float(value)


def _first_reason(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "not supported" in line.lower() or "failed" in line.lower():
            return line[:400]
    return (lines[0] if lines else type(error).__name__)[:400]
