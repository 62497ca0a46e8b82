from keras_mamsf.models.builder import build_model
from keras_mamsf.models.io import load_model, save_model
from keras_mamsf.models.mamsf_classifier import MAMSFClassifier
from keras_mamsf.models.momentum_anchored_model import MomentumAnchoredModel

__all__ = ["MAMSFClassifier", "MomentumAnchoredModel", "build_model", "load_model", "save_model"]
