"""Export for the bedside and the server: SavedModel, TFLite (float32 / float16 / dynamic / int8,
Edge TPU-ready), ONNX; parity gates, a manifest, and one runner interface for all of them."""

from keras_mamsf.export.edgetpu import check_edgetpu
from keras_mamsf.export.exporter import FORMATS, export_model
from keras_mamsf.export.inference import inference_model
from keras_mamsf.export.litert import VARIANTS
from keras_mamsf.export.runtime import load_runner

__all__ = ["FORMATS", "VARIANTS", "check_edgetpu", "export_model", "inference_model", "load_runner"]
