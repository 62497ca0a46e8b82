"""Running any artifact, below both evaluation and export (imported on first use):

- `formats`: the table of artifact formats (`FORMATS`), `artifact_format(path)`, `load_runner(path)`;
- `runners`: one runner per runtime (Keras, SavedModel, LiteRT, onnxruntime), int8 (de)quantization;
- `graph`: the float32 inference graph every export starts from and every `.keras` runs through;
- `model_card`: a model file's card, wherever it is (inside the file, the manifest beside it, a run folder);
- `card`: the card inside an exported file (`read_card`) and the digest that ties it to the file;
- `bedside`: screening images with a model file and its card (`Bedside`: what `mamsf predict` runs);
- `signature`: the serving signature's names.
"""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"FORMATS": "keras_mamsf.inference.formats", "artifact_format": "keras_mamsf.inference.formats",
            "load_runner": "keras_mamsf.inference.formats", "inference_model": "keras_mamsf.inference.graph",
            "float32_rebuild": "keras_mamsf.inference.graph", "model_card": "keras_mamsf.inference.model_card",
            "read_card": "keras_mamsf.inference.card", "Bedside": "keras_mamsf.inference.bedside"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
