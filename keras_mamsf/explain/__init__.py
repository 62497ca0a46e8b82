"""Explanations: Grad-CAM heatmaps from the fusion head (imported on first use)."""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"grad_cam": "keras_mamsf.explain.grad_cam", "overlay": "keras_mamsf.explain.grad_cam",
            "class_index": "keras_mamsf.explain.grad_cam"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
