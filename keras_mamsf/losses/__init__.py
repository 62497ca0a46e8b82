"""Losses for the long tail, in one table (`LOSSES`). Focal loss is Keras' own
`BinaryFocalCrossentropy`.

    loss = get_loss("asl", gamma_neg=4.0, clip=0.05)
    loss = loss_from_settings("weighted_bce", {"class_weighting": "balanced"}, labels=train_labels)

Adding a loss is one `LossEntry` (its class, and which settings of a training config feed which
of its arguments).
"""

import dataclasses

import keras

from keras_mamsf.losses.asymmetric import AsymmetricLoss
from keras_mamsf.losses.weighted_bce import (
    WEIGHTING_SCHEMES,
    WeightedBinaryCrossentropy,
    class_weights_from_frequencies,
    label_frequencies,
)


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """One loss.

    Attributes:
        make: builds the loss from keyword arguments (a class, or `from_labels` for a loss fitted
            to the training labels).
        needs_labels: `make` takes the training labels (`labels=`).
        settings: `{argument: setting}`: the training-config keys (`mamsf train --set`) its
            arguments come from.
    """

    make: object
    needs_labels: bool = False
    settings: dict = dataclasses.field(default_factory=dict)


LOSSES = {
    "bce": LossEntry(keras.losses.BinaryCrossentropy),
    "weighted_bce": LossEntry(WeightedBinaryCrossentropy.from_labels, needs_labels=True,
                              settings={"scheme": "class_weighting"}),
    "focal": LossEntry(keras.losses.BinaryFocalCrossentropy, settings={"gamma": "focal_gamma"}),
    "asl": LossEntry(AsymmetricLoss, settings={"gamma_neg": "asl_gamma_neg", "clip": "asl_clip"}),
}


DEFAULT = "asl"


def get_loss(name, labels=None, **kwargs):
    """A loss by name (one of `LOSSES`); `labels` (the training labels) for the losses fitted to
    them ("weighted_bce"); `kwargs` go to the loss."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
    entry = LOSSES[name]
    if entry.needs_labels:
        if labels is None:
            raise ValueError(f"{name} computes its class weights from the training labels: pass labels=")
        return entry.make(labels, **kwargs)
    return entry.make(**kwargs)


def loss_from_settings(name, settings, labels=None):
    """The loss `name` with its arguments read from `settings` (a training config as a dict)."""
    entry = LOSSES.get(name)
    arguments = {} if entry is None else {argument: settings[key] for argument, key in entry.settings.items()}
    return get_loss(name, labels=labels, **arguments)


__all__ = [
    "AsymmetricLoss",
    "LOSSES",
    "LossEntry",
    "WEIGHTING_SCHEMES",
    "WeightedBinaryCrossentropy",
    "class_weights_from_frequencies",
    "get_loss",
    "label_frequencies",
    "loss_from_settings",
]
