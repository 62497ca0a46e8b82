"""Acceptance 2 ("inplace" == block learning rate scaled by 1 - m) and 3 (None vs "branch", "shadow")."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import batch, copy_dropout_seeds, tiny_model
from harness import assert_close

DECAY = 0.8
LR = 0.01


def shared_weights(model):
    """The model's weights without the anchor's own (the order is the same in every mode)."""
    own = {id(v) for layer in model.anchor_layers for v in layer.anchor_variables}
    return [w for w in model.weights if id(w) not in own]


def copy_shared_weights(source, target, override=None):
    """Assign `source`'s weights to `target`; `override` maps a source variable id to a value."""
    override = override or {}
    pairs = list(zip(shared_weights(source), shared_weights(target), strict=True))
    for src, dst in pairs:
        assert src.shape == dst.shape and src.name == dst.name
        dst.assign(override.get(id(src), src.numpy()))
    return pairs


def block_of(model):
    return model.anchor_layers[0].block


def test_inplace_equals_scaled_block_learning_rate():
    keras.utils.set_random_seed(3)
    inplace = tiny_model("inplace", anchor_decay=DECAY, anchor_warmup=False)
    keras.utils.set_random_seed(3)
    reference = tiny_model(None)
    copy_shared_weights(inplace, reference)
    # BatchNorm statistics: the blend turns BN momentum b into 1 - (1 - m)(1 - b).
    for layer in block_of(reference).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 1 - (1 - DECAY) * (1 - layer.momentum)

    # Eager on both sides: graph and eager kernels round differently, and BatchNorm over a
    # batch of 8 amplifies that; the equivalence itself is exact algebra.
    inplace.compile(optimizer=keras.optimizers.SGD(LR), loss="binary_crossentropy", run_eagerly=True)
    x, y = batch(8)
    for _ in range(3):
        inplace.train_on_batch(x, y)

    # Independent computation: plain SGD, the block's learning rate times (1 - m).
    loss_fn = keras.losses.BinaryCrossentropy()
    block_ids = {id(v) for v in block_of(reference).trainable_variables}
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, reference(x, training=True))
        grads = tape.gradient(loss, reference.trainable_variables)
        for variable, grad in zip(reference.trainable_variables, grads):
            rate = LR * (1 - DECAY) if id(variable) in block_ids else LR
            variable.assign_sub(rate * grad)

    for ours, theirs in zip(shared_weights(inplace), shared_weights(reference), strict=True):
        assert_close(ours.numpy(), theirs.numpy(), atol=1e-5, err_msg=ours.path)  # several SGD steps apart
    for online, anchor in inplace.anchor_pairs():  # the online block *is* the anchor
        np.testing.assert_array_equal(online.numpy(), anchor.numpy())


def test_none_and_branch_share_the_head_but_not_the_forward_graph():
    plain, branch = tiny_model(None), tiny_model("branch")
    assert plain.anchor_pairs() == [] and plain.anchor_layers[0].step is None
    assert len(branch.anchor_pairs()) == 24
    for name in ("fusion", "avg_pool", "head_dropout", "logits", "probs"):
        a, b = plain.get_layer(name).get_config(), branch.get_layer(name).get_config()
        assert a == b, name
    # "branch" feeds online and anchor maps, concatenated, to the same head.
    channels = block_of(plain).output.shape[-1]
    assert plain.get_layer("momentum_anchor").output.shape[-1] == channels
    assert branch.get_layer("momentum_anchor").output.shape[-1] == 2 * channels
    # The anchor weights are in branch's forward pass: they drive the second half of the
    # fused map, and only that half.
    x, _ = batch(4)
    fused = keras.Model(branch.inputs, branch.get_layer("momentum_anchor").output)
    before = fused.predict(x, verbose=0)
    for _, anchor in branch.anchor_pairs():
        anchor.assign(anchor.numpy() * 0.5)
    after = fused.predict(x, verbose=0)
    np.testing.assert_array_equal(after[..., :channels], before[..., :channels])
    change = np.abs(after[..., channels:] - before[..., channels:]).max()
    assert change > 0.1 * np.abs(before[..., channels:]).max()  # untrained features are tiny


def test_shadow_evaluates_with_ema_weights_and_trains_with_online_ones():
    keras.utils.set_random_seed(5)
    shadow = tiny_model("shadow", anchor_decay=0.5, anchor_warmup=False)
    # Eagerly (train, predict, evaluate): the modes' semantics are the point here; the traced
    # training step is covered by test_momentum_anchor.py.
    shadow.compile(optimizer=keras.optimizers.SGD(LR), loss="binary_crossentropy", run_eagerly=True)
    x, y = batch(8)
    for _ in range(2):
        shadow.train_on_batch(x, y)
    pairs = shadow.anchor_pairs()
    assert any(not np.array_equal(o.numpy(), a.numpy()) for o, a in pairs)

    twin = tiny_model(None)  # the same network without an anchor, as the independent reference
    twin.run_eagerly = True
    ema = {id(online): anchor.numpy() for online, anchor in pairs}
    copy_shared_weights(shadow, twin, override=ema)
    assert_close(shadow.predict(x, verbose=0), twin.predict(x, verbose=0))
    twin_loss = keras.losses.BinaryCrossentropy()(y, twin.predict(x, verbose=0))
    assert_close(shadow.evaluate(x, y, verbose=0), float(twin_loss))

    copy_shared_weights(shadow, twin)  # online weights this time, and the same dropout seeds
    copy_dropout_seeds(shadow, twin)
    assert_close(shadow(x, training=True).numpy(), twin(x, training=True).numpy())
    with pytest.raises(AssertionError):
        assert_close(shadow.predict(x, verbose=0), twin.predict(x, verbose=0))

    features = shadow.feature_model()(x)
    assert np.abs(features["online"].numpy() - features["anchor"].numpy()).max() > 0
    assert_close(features["probs"].numpy(), shadow.predict(x, verbose=0))
