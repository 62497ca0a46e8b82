"""keras-mamsf: the Momentum-Anchored Multi-Scale Fusion model for chest X-ray classification."""

from keras_mamsf import losses
from keras_mamsf.anchor import ANCHOR_MODES, MomentumAnchor, anchor_decay
from keras_mamsf.backbones import BACKBONES
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.layers import GrayscaleToRGB, MultiScaleFusion
from keras_mamsf.models import MomentumAnchoredModel, build_model, load_model, save_model
from keras_mamsf.training import default_callbacks
from keras_mamsf.version import __version__

__all__ = [
    "ANCHOR_MODES",
    "BACKBONES",
    "CHESTXRAY14_LABELS",
    "GrayscaleToRGB",
    "MomentumAnchor",
    "MomentumAnchoredModel",
    "MultiScaleFusion",
    "__version__",
    "anchor_decay",
    "build_model",
    "default_callbacks",
    "load_model",
    "losses",
    "save_model",
]
