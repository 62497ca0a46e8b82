"""Acceptance 1: the one-step EMA equation, BN statistics included; no gradients reach the anchor."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mamsf as mamsf

from conftest import batch, tiny_model, values
from harness import assert_close

DECAY = 0.9


@pytest.fixture(scope="module")
def stepped():
    """A "branch" model, its state before and after one SGD step (warmup off)."""
    model = tiny_model("branch", anchor_decay=DECAY, anchor_warmup=False)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")
    pairs = model.anchor_pairs()
    rng = np.random.default_rng(1)
    for _, anchor in pairs:  # move the anchor away from the online weights first
        anchor.assign(anchor.numpy() + rng.normal(0, 0.01, anchor.shape).astype("float32"))
    online_before = values([o for o, _ in pairs])
    anchor_before = values([a for _, a in pairs])
    x, y = batch()
    model.train_on_batch(x, y)
    return model, pairs, online_before, anchor_before


def test_anchor_covers_block_weights_and_bn_statistics(stepped):
    model, pairs, _, _ = stepped
    paths = [online.path for online, _ in pairs]
    assert len(pairs) == 24  # the final stage (one block, as in B0) + top: 16 trainable + 8 BN moving statistics
    assert sum(p.endswith(("moving_mean", "moving_variance")) for p in paths) == 8
    assert all(p.startswith(("block4a_", "top_")) for p in paths)  # test_efficientnet's last stage is 4
    for online, anchor in pairs:
        assert anchor is not online and anchor.dtype == "float32" and not anchor.trainable
        assert anchor.aggregation == "mean"
    step = model.anchor_layers[0].step
    assert step.dtype == "int32" and step.aggregation == "only_first_replica"


def test_one_step_equation_holds_for_every_anchor_variable(stepped):
    model, pairs, online_before, anchor_before = stepped
    online_after = values([o for o, _ in pairs])
    anchor_after = values([a for _, a in pairs])
    moved = 0
    for path, old_online, new_online, old_anchor, new_anchor in zip(
        [o.path for o, _ in pairs], online_before, online_after, anchor_before, anchor_after
    ):
        expected = DECAY * old_anchor + (1 - DECAY) * new_online
        assert_close(new_anchor, expected, err_msg=path)
        moved += not np.array_equal(old_online, new_online)
    assert moved == len(pairs)  # every online variable, BN statistics included, did change
    assert int(model.anchor_layers[0].step.numpy()) == 1


def test_anchor_variables_never_receive_gradients(stepped):
    model, pairs, _, _ = stepped
    trainable = {id(v) for v in model.trainable_variables}
    optimized = {id(v) for v in model.optimizer._trainable_variables}
    for _, anchor in pairs:
        assert id(anchor) not in trainable and id(anchor) not in optimized
    # The branch still passes gradients to the trunk: the anchor features depend on it.
    features = model.feature_model()
    x, _ = batch(2)
    trunk_kernel = model.get_layer("trunk").get_layer("block3a_expand_conv").kernel
    with tf.GradientTape() as tape:
        anchor_sum = tf.reduce_sum(features(x)["anchor"])
    gradient = tape.gradient(anchor_sum, trunk_kernel.value)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_warmup_first_update_copies_online_weights():
    model = tiny_model("shadow", anchor_decay=0.999, anchor_warmup=True)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")
    for _, anchor in model.anchor_pairs():
        anchor.assign(np.zeros(anchor.shape, "float32"))
    model.train_on_batch(*batch())
    for online, anchor in model.anchor_pairs():
        np.testing.assert_array_equal(anchor.numpy(), online.numpy())

    # A diverged step (NaN labels -> NaN weights) does not reach the anchor or its counter.
    anchors_before = values([a for _, a in model.anchor_pairs()])
    x, y = batch()
    y[0, 0] = np.nan
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=mamsf.default_callbacks())
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])  # TerminateOnNaN stopped it
    assert int(model.anchor_layers[0].step.numpy()) == 1
    for before, (online, anchor) in zip(anchors_before, model.anchor_pairs()):
        np.testing.assert_array_equal(anchor.numpy(), before)
    assert not all(np.isfinite(o.numpy()).all() for o, _ in model.anchor_pairs())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "ema"}, "anchor mode 'ema' is not one of"),
        ({"decay": 1.0}, "anchor decay must be in [0, 1)"),
        ({"warmup_power": 0}, "warmup gamma and power must be positive"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        mamsf.MomentumAnchor(block, **kwargs)


def test_gradient_accumulation_counts_only_update_steps():
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    inputs = keras.Input((4,))
    outputs = mamsf.MomentumAnchor(block, mode="shadow", decay=0.5, warmup=False)(inputs)
    model = mamsf.MomentumAnchoredModel(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 4)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    steps = []
    for _ in range(4):
        model.train_on_batch(x, y)
        steps.append(int(model.anchor_layers[0].step.numpy()))
    assert steps == [0, 1, 1, 2]
