"""Asymmetric loss (ASL, Ridnik et al., ICCV 2021) for multi-label long-tailed data."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mamsf")
class AsymmetricLoss(keras.losses.Loss):
    """ASL on probabilities, averaged over classes:

        p_m   = max(p - clip, 0)                       (easy negatives are discarded)
        loss  = -mean_c [ y (1 - p)^gamma_pos log p  +  (1 - y) p_m^gamma_neg log(1 - p_m) ]

    With gamma_pos = gamma_neg = 0 and clip = 0 it is binary cross-entropy. The paper's
    defaults are gamma_pos=0, gamma_neg=4, clip=0.05.
    """

    def __init__(self, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, epsilon=1e-7, reduction="sum_over_batch_size",
                 name="asymmetric_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma_pos < 0 or gamma_neg < 0 or not 0 <= clip < 1:
            raise ValueError(f"ASL needs gamma_pos, gamma_neg >= 0 and 0 <= clip < 1, got {gamma_pos}, {gamma_neg}, "
                             f"{clip}")
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), self.epsilon, 1.0 - self.epsilon)
        p_m = ops.maximum(p - self.clip, 0.0)
        positive = y_true * ops.power(1.0 - p, self.gamma_pos) * ops.log(p)
        negative = (1.0 - y_true) * ops.power(p_m, self.gamma_neg) * ops.log(ops.maximum(1.0 - p_m, self.epsilon))
        return -ops.mean(positive + negative, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"gamma_pos": self.gamma_pos, "gamma_neg": self.gamma_neg, "clip": self.clip, "epsilon": self.epsilon}
        )
        return config
