import keras
import numpy as np
import pytest

from keras_mamsf.losses import (
    AsymmetricLoss,
    WeightedBinaryCrossentropy,
    class_weights_from_frequencies,
    get_loss,
    label_frequencies,
)

EPS = 1e-7


def data():
    rng = np.random.default_rng(0)
    y = (rng.random((16, 4)) < [0.5, 0.2, 0.1, 0.05]).astype("float32")
    y[0] = 1  # every class has a positive
    p = rng.uniform(0.01, 0.99, size=(16, 4)).astype("float32")
    return y, p


def test_weighted_bce_matches_numpy():
    y, p = data()
    loss = WeightedBinaryCrossentropy.from_labels(y, scheme="balanced")
    f = y.mean(axis=0)
    w_pos, w_neg = 0.5 / f, 0.5 / (1 - f)
    expected = -(w_pos * y * np.log(p) + w_neg * (1 - y) * np.log(1 - p)).mean()
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)


def test_unit_weights_equal_keras_bce():
    y, p = data()
    loss = WeightedBinaryCrossentropy(np.ones(4), np.ones(4))
    assert float(loss(y, p)) == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)), rel=1e-5)


def test_weighting_schemes_and_errors():
    f = np.array([0.5, 0.1])
    pos, neg = class_weights_from_frequencies(f, "inverse")
    np.testing.assert_allclose(pos, [1.0, 9.0])
    np.testing.assert_allclose(neg, [1.0, 1.0])
    pos, neg = class_weights_from_frequencies(f, "chexnet")
    np.testing.assert_allclose(pos, [0.5, 0.9])
    np.testing.assert_allclose(neg, [0.5, 0.1])
    labels = np.array([[1, 0], [0, 0]], dtype="float32")
    np.testing.assert_allclose(label_frequencies(labels), [0.5, 0.0])
    with pytest.raises(ValueError, match="class 1 has positive frequency 0; weights need 0 < f < 1"):
        WeightedBinaryCrossentropy.from_labels(labels)
    with pytest.raises(ValueError, match="unknown weighting scheme 'magic'"):
        class_weights_from_frequencies(f, "magic")


def test_asl_matches_numpy_and_reduces_to_bce():
    y, p = data()
    gp, gn, clip = 1.0, 4.0, 0.05
    pm = np.maximum(p - clip, 0)
    expected = -(y * (1 - p) ** gp * np.log(p) + (1 - y) * pm**gn * np.log(1 - pm)).mean()
    assert float(AsymmetricLoss(gp, gn, clip)(y, p)) == pytest.approx(expected, rel=1e-5)
    bce = float(keras.losses.BinaryCrossentropy()(y, p))
    assert float(AsymmetricLoss(0, 0, 0)(y, p)) == pytest.approx(bce, rel=1e-5)


def test_registry_and_serialization():
    y, p = data()
    for loss in (WeightedBinaryCrossentropy.from_labels(y), AsymmetricLoss(gamma_neg=2)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
        assert float(clone(y, p)) == pytest.approx(float(loss(y, p)))
    assert isinstance(get_loss("focal"), keras.losses.BinaryFocalCrossentropy)
    assert isinstance(get_loss("weighted_bce", labels=y), WeightedBinaryCrossentropy)
    with pytest.raises(ValueError, match="pass labels="):
        get_loss("weighted_bce")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
