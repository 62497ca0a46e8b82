"""`weight_ema`: the whole model's weight average (Keras' optimizer `use_ema`) seen by validation and
the best checkpoint (`WithWeightEMA`), while training goes on as without it."""

import keras
import numpy as np
import pytest

from keras_mamsf.training.callbacks import WithWeightEMA
from keras_mamsf.training.config import ConfigError, TrainConfig

from conftest import batch, toy_model, values

MOMENTUM = 0.9


def _fit(average_callback, epochs=2, steps_per_epoch=4):
    keras.utils.set_random_seed(0)
    model = toy_model("branch")  # the anchor's state (non-trainable) feeds the forward pass
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=MOMENTUM),
                  loss="binary_crossentropy")
    x, y = batch(8 * steps_per_epoch, seed=1, size=8)
    online, seen = [], []

    def record_online(step, logs):
        if hasattr(model, "jax_state_sync"):  # JAX keeps the state outside the variables within an epoch
            model.jax_state_sync()
        online.append(values(model.trainable_variables))

    callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=record_online)]
    if average_callback:
        probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
            values(model.trainable_variables)))
        callbacks.append(WithWeightEMA([probe], batches=[x[:16], x[16:]]))
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, callbacks=callbacks, verbose=0)
    return model, online, seen


def _average(steps):
    """The moving average by hand: the first step's weights, then m * average + (1 - m) * weights."""
    average = [np.array(w) for w in steps[0]]
    for weights in steps[1:]:
        average = [MOMENTUM * a + (1 - MOMENTUM) * w for a, w in zip(average, weights)]
    return average


def test_callbacks_see_the_average_and_training_goes_on_as_without_it():
    model, online, seen = _fit(average_callback=True)
    _, plain_online, _ = _fit(average_callback=False)
    assert len(online) == len(plain_online) == 8 and len(seen) == 2
    for with_it, without_it in zip(online, plain_online):  # swapped back, anchor and statistics restored
        for a, b in zip(with_it, without_it):
            np.testing.assert_allclose(a, b, atol=1e-5)
    for epoch, weights in enumerate(seen):
        expected = _average(online[:4 * (epoch + 1)])
        assert any(np.abs(w - o).max() > 1e-3 for w, o in zip(weights, online[4 * epoch + 3]))  # not the online
        for a, b in zip(weights, expected):
            np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(values(model.trainable_variables), _average(online)):  # fit ends with the average in place
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_weight_ema_setting_is_checked():
    assert TrainConfig().weight_ema == 0.0 and TrainConfig().with_overrides(["weight_ema=0.998"]).weight_ema == 0.998
    with pytest.raises(ConfigError, match=r"weight_ema must be in \[0.0, 1.0\); got 1.0"):
        TrainConfig().with_overrides(["weight_ema=1.0"])
