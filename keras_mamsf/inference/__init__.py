"""Running any artifact, below both evaluation and export (imported on first use):

- `formats`: the table of artifact formats (`FORMATS`), `artifact_format(path)`, `load_runner(path)`;
- `runners`: one runner per runtime (Keras, SavedModel, LiteRT, onnxruntime), int8 (de)quantization;
- `graph`: the float32 inference graph every export starts from and every `.keras` runs through;
- `model_card`: the read side of an export folder's `manifest.json` (labels, thresholds, verdicts);
- `signature`: the serving signature's names.
"""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"FORMATS": "keras_mamsf.inference.formats", "artifact_format": "keras_mamsf.inference.formats",
            "load_runner": "keras_mamsf.inference.formats", "inference_model": "keras_mamsf.inference.graph",
            "float32_rebuild": "keras_mamsf.inference.graph", "model_card": "keras_mamsf.inference.model_card"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
