from keras_mamsf.anchor.momentum_anchor import ANCHOR_MODES, MomentumAnchor
from keras_mamsf.anchor.schedule import anchor_decay

__all__ = ["ANCHOR_MODES", "MomentumAnchor", "anchor_decay"]
