"""Precise BatchNorm: the statistics are the average of the batch statistics, the anchor's too."""

import keras
import numpy as np

from keras_mamsf.data.sources import sample_indices as training_sample
from keras_mamsf.training.precise_bn import reestimate_batchnorm

from conftest import IMAGE, tiny_model
from harness import assert_close


def _batches(count=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0, 1, (size, IMAGE, IMAGE, 3)) * rng.uniform(60, 255)).astype("float32")
            for _ in range(count)]


def test_statistics_are_the_average_of_the_batch_statistics():
    keras.utils.set_random_seed(0)
    model = tiny_model("branch")
    batches = _batches()
    trunk = model.get_layer("trunk")
    stem_bn = trunk.get_layer("stem_bn")
    momentum = stem_bn.momentum
    # Independently: the stem convolution's output (the first BatchNorm's input) per batch.
    stem = keras.Model(trunk.inputs, trunk.get_layer("stem_conv").output)
    outputs = [stem.predict(images, verbose=0).astype("float64") for images in batches]
    expected_mean = np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0)
    expected_variance = np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0)

    assert reestimate_batchnorm(model, batches) == 24
    assert_close(stem_bn.moving_mean.numpy(), expected_mean, rtol=1e-4)  # a running average over batches
    assert_close(stem_bn.moving_variance.numpy(), expected_variance, rtol=1e-4)  # likewise
    assert stem_bn.momentum == momentum  # restored


def test_the_anchor_statistics_are_re_estimated_with_the_anchor_weights():
    """The anchor's copy of the block's first convolution doubled: on the same trunk features, the
    anchor's first BatchNorm must see 4x the online variance (its own weights, not a copy of the
    online statistics), and every anchor variance moves off its start (1)."""
    keras.utils.set_random_seed(1)
    model = tiny_model("branch")
    pairs = {online.path: (online, anchor) for online, anchor in model.anchor_pairs()}
    kernel = next(anchor for path, (_, anchor) in pairs.items() if path.endswith("expand_conv/kernel"))
    kernel.assign(kernel.value * 2.0)
    variances = [pair for path, pair in pairs.items() if path.endswith("moving_variance")]
    starts = [anchor.numpy().copy() for _, anchor in variances]
    reestimate_batchnorm(model, _batches(seed=1))
    online, anchor = next(pair for path, pair in pairs.items() if path.endswith("expand_bn/moving_variance"))
    assert_close(anchor.numpy(), 4.0 * online.numpy(), rtol=1e-4)  # likewise
    for (_, anchor), start in zip(variances, starts):
        assert np.abs(anchor.numpy() - start).max() > 1e-2, anchor.path


def test_training_sample_is_seeded_and_capped():
    assert training_sample(5, 3).tolist() == [0, 1, 2]
    first, again = training_sample(4, 100, seed=3), training_sample(4, 100, seed=3)
    assert first.tolist() == again.tolist() and len(set(first.tolist())) == 4 and sorted(first) == list(first)
