"""Optimizers: `DiscriminativeAdamW` (a smaller learning rate for a pretrained backbone than for the head)."""

from keras_mamsf.optimizers.discriminative_adamw import DiscriminativeAdamW

__all__ = ["DiscriminativeAdamW"]
