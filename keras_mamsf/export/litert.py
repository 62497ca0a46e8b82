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
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None:
            raise ValueError("int8 needs representative images: pass --calibration-data ROOT")
        if io_type not in IO_TYPES:
            raise ValueError(f"int8 input/output type must be one of {IO_TYPES}, got {io_type!r}")
        images = [np.asarray(image, dtype="float32") for image in representative]
        if not images:
            raise ValueError("int8 calibration got no images")

        def dataset():
            for image in images:
                yield {"image": image}

        converter.representative_dataset = dataset
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


def _first_reason(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "not supported" in line.lower() or "failed" in line.lower():
            return line[:400]
    return (lines[0] if lines else type(error).__name__)[:400]
