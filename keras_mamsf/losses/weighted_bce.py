"""Binary cross-entropy with per-class positive/negative weights for multi-label data."""

import keras
import numpy as np
from keras import ops

WEIGHTING_SCHEMES = ("balanced", "inverse", "chexnet")


def label_frequencies(labels):
    """Fraction of positives per class of a `(samples, classes)` 0/1 array."""
    labels = np.asarray(labels, dtype="float64")
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty (samples, classes) array, got shape {labels.shape}")
    return labels.mean(axis=0)


def class_weights_from_frequencies(frequencies, scheme="balanced"):
    """`(positive_weights, negative_weights)` for positive fractions `frequencies`.

    - "balanced": w+ = 1 / (2 f), w- = 1 / (2 (1 - f)); each class's positives and
      negatives then weigh the same in total (scikit-learn's "balanced" for 2 classes).
    - "inverse":  w+ = (1 - f) / f, w- = 1 (the `pos_weight` of weighted cross-entropy).
    - "chexnet":  w+ = 1 - f, w- = f (Rajpurkar et al. 2017).
    """
    f = np.asarray(frequencies, dtype="float64")
    if scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"unknown weighting scheme {scheme!r}: use one of {WEIGHTING_SCHEMES}")
    bad = np.flatnonzero((f <= 0) | (f >= 1) | ~np.isfinite(f))
    if bad.size:
        raise ValueError(
            f"class {int(bad[0])} has positive frequency {float(f[bad[0]]):g}; weights need 0 < f < 1 "
            "(a class with no positives or no negatives in the training split cannot be weighted)"
        )
    if scheme == "balanced":
        return 0.5 / f, 0.5 / (1.0 - f)
    if scheme == "inverse":
        return (1.0 - f) / f, np.ones_like(f)
    return 1.0 - f, f.copy()


@keras.saving.register_keras_serializable(package="keras_mamsf")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """loss = -mean_c [ w+_c * y log p + w-_c * (1 - y) log(1 - p) ], p = clip(y_pred).

    `y_pred` are probabilities. Build it from data with `from_labels(y_train)` or
    `from_frequencies(f)`.
    """

    def __init__(self, positive_weights, negative_weights=None, epsilon=1e-7, reduction="sum_over_batch_size",
                 name="weighted_binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.positive_weights = [float(w) for w in np.ravel(positive_weights)]
        self.negative_weights = (
            [1.0] * len(self.positive_weights) if negative_weights is None
            else [float(w) for w in np.ravel(negative_weights)]
        )
        if len(self.negative_weights) != len(self.positive_weights):
            raise ValueError(
                f"{len(self.positive_weights)} positive weights but {len(self.negative_weights)} negative weights"
            )
        self.epsilon = float(epsilon)

    @classmethod
    def from_frequencies(cls, frequencies, scheme="balanced", **kwargs):
        positive, negative = class_weights_from_frequencies(frequencies, scheme)
        return cls(positive, negative, **kwargs)

    @classmethod
    def from_labels(cls, labels, scheme="balanced", **kwargs):
        return cls.from_frequencies(label_frequencies(labels), scheme, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), self.epsilon, 1.0 - self.epsilon)
        w_pos = ops.convert_to_tensor(self.positive_weights, dtype="float32")
        w_neg = ops.convert_to_tensor(self.negative_weights, dtype="float32")
        per_class = w_pos * y_true * ops.log(p) + w_neg * (1.0 - y_true) * ops.log(1.0 - p)
        return -ops.mean(per_class, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"positive_weights": self.positive_weights, "negative_weights": self.negative_weights,
             "epsilon": self.epsilon}
        )
        return config
