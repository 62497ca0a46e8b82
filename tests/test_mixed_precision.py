"""Acceptance 4 (a float16 overflow step changes nothing) and 5 (bfloat16 stays finite)."""

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.utils.environment import auto_dtype_policy

from conftest import batch, tiny_model, toy_model, values


def test_build_does_not_leak_its_policy(float32_policy):
    model = tiny_model("branch", dtype_policy="mixed_float16")
    assert keras.config.dtype_policy().name == "float32"
    assert model.dtype_policy.name == "mixed_float16"
    assert model.get_layer("logits").compute_dtype == model.get_layer("probs").compute_dtype == "float32"


def test_float16_overflow_step_changes_neither_weights_nor_anchor(float32_policy):
    # The toy model: the same anchor and step code without EfficientNet's 30 s graph trace.
    model = toy_model("branch", dtype_policy="mixed_float16", decay=0.9, warmup=False)
    # A loss scale of 2**60 overflows every float16 gradient: the step must be skipped.
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), initial_scale=2.0**60)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    x, y = batch(size=8)
    model.predict(x, verbose=0)
    # Trainable weights: the forward pass still updates BatchNorm moving statistics on a
    # skipped step, as in every framework (PyTorch's GradScaler too); the anchor does not.
    online = model.trainable_variables
    anchors = [a for _, a in model.anchor_pairs()]
    online_before, anchor_before = values(online), values(anchors)

    model.train_on_batch(x, y)
    assert int(model.optimizer.iterations.numpy()) == 0
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**59
    assert int(model.anchor_layers[0].step.numpy()) == 0
    for before, after in zip(online_before + anchor_before, values(online) + values(anchors)):
        np.testing.assert_array_equal(before, after)

    # Once the scale is sane, a step goes through and the anchor advances (the test can fail).
    model.optimizer.dynamic_scale.assign(2.0**10)
    model.train_on_batch(x, y)
    assert int(model.optimizer.iterations.numpy()) == 1
    assert int(model.anchor_layers[0].step.numpy()) == 1
    assert any(not np.array_equal(b, a) for b, a in zip(anchor_before, values(anchors)))
    assert all(a.dtype == "float32" for a in anchors)


@pytest.mark.slow  # 20 graph steps; the JAX worker checks bfloat16 too
def test_bfloat16_training_stays_finite_for_20_steps(float32_policy):
    model = tiny_model("branch", dtype_policy="mixed_bfloat16")
    assert model.get_layer("probs").compute_dtype == "float32"
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="binary_crossentropy")
    x, y = batch(40, seed=2)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=mamsf.default_callbacks())
    assert int(model.optimizer.iterations.numpy()) == 20
    assert int(model.anchor_layers[0].step.numpy()) == 20
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(v).all() for v in values(model.weights))


def test_inplace_skipped_step_leaves_the_online_block_as_the_step_left_it(float32_policy):
    """A float16 step skipped by the loss scaler: "inplace" must not write the (unchanged)
    anchor over the online block, which would undo the step's BatchNorm statistics."""
    def skipping_compile(model):
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), initial_scale=2.0**60)
        model.compile(optimizer=optimizer, loss="binary_crossentropy", run_eagerly=True)

    keras.utils.set_random_seed(2)
    model = toy_model("inplace", dtype_policy="mixed_float16", decay=0.5, warmup=False)
    reference = toy_model(None, dtype_policy="mixed_float16")  # the same step, no anchor
    by_path = {v.path: v for v in model.weights}  # the toy's layers are all named
    for weight in reference.weights:
        weight.assign(by_path[weight.path].value)
    for _, anchor in model.anchor_pairs():  # an anchor unlike the online block, so a write would show
        anchor.assign(anchor.value + 0.5)
    skipping_compile(model)
    skipping_compile(reference)
    x, y = batch(4, size=8)
    block = model.anchor_layers[0].block
    trainable_before = values(block.trainable_variables)
    statistics_before = values(block.non_trainable_variables)

    model.train_on_batch(x, y)
    reference.train_on_batch(x, y)
    assert int(model.optimizer.iterations.numpy()) == 0 and int(model.anchor_layers[0].step.numpy()) == 0
    for before, after in zip(trainable_before, values(block.trainable_variables), strict=True):
        np.testing.assert_array_equal(after, before)
    statistics = values(block.non_trainable_variables)
    assert all(not np.array_equal(b, a) for b, a in zip(statistics_before, statistics))  # the step moved them
    reference_block = reference.anchor_layers[0].block
    for ours, theirs in zip(statistics, values(reference_block.non_trainable_variables), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("platform, policy", [("cpu", "float32"), ("gpu", "mixed_bfloat16"),
                                              ("tpu", "mixed_bfloat16")])
def test_auto_dtype_policy_follows_the_keras_backends_platform(platform, policy):
    # The platform comes from the Keras backend (JAX on a GPU next to a CPU-only TensorFlow is on a GPU).
    assert auto_dtype_policy(platform) == policy
