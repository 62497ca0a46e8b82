"""Losses for the long tail. Focal loss is Keras' own `BinaryFocalCrossentropy`."""

import keras

from keras_mamsf.losses.asymmetric import AsymmetricLoss
from keras_mamsf.losses.weighted_bce import (
    WEIGHTING_SCHEMES,
    WeightedBinaryCrossentropy,
    class_weights_from_frequencies,
    label_frequencies,
)

LOSSES = ("bce", "weighted_bce", "focal", "asl")


def get_loss(name, labels=None, **kwargs):
    """A loss by name: "bce", "weighted_bce" (needs `labels`, the training labels),
    "focal" (`keras.losses.BinaryFocalCrossentropy`) or "asl". `kwargs` go to the loss."""
    if name == "bce":
        return keras.losses.BinaryCrossentropy(**kwargs)
    if name == "weighted_bce":
        if labels is None:
            raise ValueError("weighted_bce computes its class weights from the training labels: pass labels=")
        return WeightedBinaryCrossentropy.from_labels(labels, **kwargs)
    if name == "focal":
        return keras.losses.BinaryFocalCrossentropy(**kwargs)
    if name == "asl":
        return AsymmetricLoss(**kwargs)
    raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")


__all__ = [
    "AsymmetricLoss",
    "LOSSES",
    "WEIGHTING_SCHEMES",
    "WeightedBinaryCrossentropy",
    "class_weights_from_frequencies",
    "get_loss",
    "label_frequencies",
]
