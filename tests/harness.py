"""Shared test helpers for our layers and models (keras-hub's `run_precision_test` and
`run_serialization_test` are the pattern): dtype discipline and config round trips."""

import json
import re

import keras
import numpy as np

from keras_mamsf.utils.layers import leaf_layers

FLOAT32_LAYERS = ("logits", "probs")  # build_model keeps the head's outputs in float32


def sublayer_dtypes(layer):
    """`{leaf layer name: (compute dtype, variable dtype)}` over every computing sub-layer, in
    walk order. Names lose Keras' per-session suffix ("rescaling_7" -> "rescaling"), so two
    builds of one model compare equal; a repeated name gets "#2", "#3", ..."""
    dtypes = {}
    for sub in leaf_layers(layer):
        name = key = re.sub(r"_\d+$", "", sub.name)
        repeat = 1
        while key in dtypes:
            repeat += 1
            key = f"{name}#{repeat}"
        dtypes[key] = (sub.compute_dtype, sub.variable_dtype)
    return dtypes


def run_precision_test(make_layer, inputs, policy, float32_layers=()):
    """`make_layer(dtype)` built under the global float32 policy with `dtype=policy`: every
    sub-layer computes in the policy's compute dtype and keeps float32 variables (except the
    named float32 ones), the output has the compute dtype, and the floating variables are
    float32 or the policy's own, never float64."""
    policy = keras.dtype_policies.get(policy)
    layer = make_layer(policy)
    outputs = layer(inputs)
    assert layer.dtype_policy.name == policy.name
    expected = {name: ("float32", "float32") if name in float32_layers else (policy.compute_dtype, "float32")
                for name in sublayer_dtypes(layer)}
    assert sublayer_dtypes(layer) == expected
    if not float32_layers:
        assert keras.backend.standardize_dtype(outputs.dtype) == policy.compute_dtype
    return layer


def run_serialization_test(layer, inputs=None):
    """`get_config` -> JSON -> `from_config` gives a layer with the same config (and, with
    `inputs` and the weights copied, the same outputs)."""
    config = json.loads(json.dumps(layer.get_config()))  # what a .keras file stores
    revived = layer.__class__.from_config(config)
    assert json.loads(json.dumps(revived.get_config())) == config
    assert sublayer_dtypes(revived) == sublayer_dtypes(layer) or not revived.built
    if inputs is not None:
        if not revived.built:
            revived(inputs)
        revived.set_weights(layer.get_weights())
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(revived(inputs, training=False)),
            keras.ops.convert_to_numpy(layer(inputs, training=False)),
        )
    return revived
