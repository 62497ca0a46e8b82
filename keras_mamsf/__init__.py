"""keras-mamsf: the Momentum-Anchored Multi-Scale Fusion model for chest X-ray classification.

The public names below are imported on first use, so that the `mamsf` command starts without
Keras when it does not need it. Using any of them (`mamsf.build_model`, `mamsf.load_model`, ...)
registers the package's layers and model with Keras' serialization; when Keras is already
imported (`import keras` before `import keras_mamsf`) they are registered at once, so a plain
`keras.saving.load_model` of a `.keras` file finds them.
"""

import sys

from keras_mamsf.labels import CHESTXRAY14_LABELS as CHESTXRAY14_LABELS  # re-exported
from keras_mamsf.utils.lazy import lazy_attributes
from keras_mamsf.version import __version__ as __version__  # re-exported

_EXPORTS = {
    "ANCHOR_MODES": "keras_mamsf.anchor",
    "BACKBONES": "keras_mamsf.backbones",
    "GrayscaleToRGB": "keras_mamsf.layers",
    "MAMSFClassifier": "keras_mamsf.models",
    "MomentumAnchor": "keras_mamsf.anchor",
    "MomentumAnchoredModel": "keras_mamsf.models",
    "MultiScaleFusion": "keras_mamsf.layers",
    "OODGuard": "keras_mamsf.guard",
    "OODScore": "keras_mamsf.layers",
    "anchor_decay": "keras_mamsf.anchor",
    "build_model": "keras_mamsf.models",
    "default_callbacks": "keras_mamsf.training",
    "fit_guard": "keras_mamsf.guard",
    "load_model": "keras_mamsf.models",
    "register_backbone": "keras_mamsf.backbones",
    "save_model": "keras_mamsf.models",
    **{name: f"keras_mamsf.{name}" for name in ("losses", "training", "data", "evaluation", "export", "inference",
                                                "stats", "guard")},
}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(["CHESTXRAY14_LABELS", "__version__", *_EXPORTS])

if "keras" in sys.modules:
    import keras_mamsf.models  # noqa: F401  (registers the serializable classes)
