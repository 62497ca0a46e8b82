"""The anchor's decay schedule: a pure function of the update count."""

from keras import ops


def anchor_decay(step, decay, warmup=True, warmup_gamma=1.0, warmup_power=2.0 / 3.0):
    """Momentum `m_t` used for the anchor update number `step`.

    With warmup (timm's `ModelEmaV3` convention):

        m_t = min(m, 1 - (1 + t / gamma) ** -power)

    where `t` counts the real optimizer updates that happened *before* this one, so the
    first update (`t = 0`) copies the online weights (`m_0 = 0`) and `m_t` then rises
    towards `m`. With power 2/3, `m_t` reaches 0.999 after about 31.6k updates; with
    power 3/4, after 10k. Without warmup `m_t = m` from the first update on.

    Works on Python numbers, NumPy values and backend tensors (it is traced inside
    `train_step`). Returns a float32 scalar.
    """
    decay = ops.cast(decay, "float32")
    if not warmup:
        return decay
    step = ops.cast(step, "float32")
    ramp = 1.0 - ops.power(1.0 + step / warmup_gamma, -warmup_power)
    return ops.minimum(decay, ramp)
