"""The momentum anchor: its modes (`modes`, no Keras needed), its EMA schedule and the layer
(imported on first use, so the `mamsf` command can read the mode table without loading Keras)."""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"ANCHOR_MODES": "keras_mamsf.anchor.modes", "MODES": "keras_mamsf.anchor.modes",
            "AnchorMode": "keras_mamsf.anchor.modes", "anchor_mode": "keras_mamsf.anchor.modes",
            "MomentumAnchor": "keras_mamsf.anchor.momentum_anchor", "anchor_decay": "keras_mamsf.anchor.schedule"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
