import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mamsf import MultiScaleFusion

from harness import assert_close


def reference_conv_bn_act(x, seq):
    conv, bn, _ = seq.layers
    y = tf.nn.conv2d(x, conv.kernel.numpy(), strides=1, padding="SAME").numpy()
    y = (y - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    y = y * bn.gamma.numpy() + bn.beta.numpy()
    return y / (1 + np.exp(-y))  # swish


def test_matches_an_independent_computation():
    layer = MultiScaleFusion(filters=6, kernel_sizes=(1, 3, 5), branch_filters=4)
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 10)).astype("float32")
    layer(x)  # build
    rng = np.random.default_rng(1)
    for bn in [sub.layers[1] for sub in [layer.reduce, *layer.branches, layer.fuse]]:  # non-trivial statistics
        bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2, size=bn.moving_variance.shape).astype("float32"))
        bn.gamma.assign(rng.uniform(0.5, 2, size=bn.gamma.shape).astype("float32"))
    out = layer(x, training=False).numpy()
    reduced = reference_conv_bn_act(x, layer.reduce)
    branches = np.concatenate([reference_conv_bn_act(reduced, b) for b in layer.branches], axis=-1)
    expected = reference_conv_bn_act(branches, layer.fuse)
    assert out.shape == (2, 7, 7, 6) and branches.shape[-1] == 12
    assert_close(out, expected, atol=1e-4, rtol=1e-4)  # against a NumPy convolution
    kernels = [b.layers[0].kernel.shape[:2] for b in layer.branches]
    assert kernels == [(1, 1), (3, 3), (5, 5)]


def test_config_round_trip_and_validation():
    layer = MultiScaleFusion(filters=8, kernel_sizes=(1, 3), activation="relu6", name="f")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, MultiScaleFusion) and clone.get_config() == layer.get_config()
    assert clone.branch_filters == 8 and clone.kernel_sizes == (1, 3)
    with pytest.raises(ValueError, match="odd positive kernel sizes"):
        MultiScaleFusion(filters=8, kernel_sizes=(2,))


def test_converts_to_int8_builtins_only(tmp_path):
    inputs = keras.Input((8, 8, 16))
    outputs = MultiScaleFusion(filters=8)(inputs)
    model = keras.Model(inputs, outputs)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.normal(size=(1, 8, 8, 16)).astype("float32")] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # no float, no Flex
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    assert len(converter.convert()) > 0  # the converter raises if any op is not an int8 builtin
