from keras_mamsf.layers.grayscale_to_rgb import GrayscaleToRGB
from keras_mamsf.layers.multi_scale_fusion import MultiScaleFusion
from keras_mamsf.layers.ood_score import OODScore

__all__ = ["GrayscaleToRGB", "MultiScaleFusion", "OODScore"]
