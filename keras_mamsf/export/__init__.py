"""Export for the bedside and the server: SavedModel, TFLite (float32 / float16 / dynamic / int8,
Edge TPU-ready), ONNX; parity gates and a manifest. Running the artifacts is
`keras_mamsf.inference`'s (its `load_runner` and `inference_model` are also reachable from here).
(Imported on first use: `keras_mamsf.export.parity` alone does not load TensorFlow.)"""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"FORMATS": "keras_mamsf.export.exporter", "VARIANTS": "keras_mamsf.export.litert",
            "check_edgetpu": "keras_mamsf.export.edgetpu", "export_model": "keras_mamsf.export.exporter",
            "inference_model": "keras_mamsf.inference.graph", "load_runner": "keras_mamsf.inference.formats",
            "fold_grayscale_stem": "keras_mamsf.export.folding", "gptq_round": "keras_mamsf.export.weight_rounding",
            "rounded_for_int8": "keras_mamsf.export.weight_rounding"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
