"""Shared test helpers for our layers and models (keras-hub's `run_precision_test` and
`run_serialization_test` are the pattern): dtype discipline, config round trips, and the one
statement of how close two float results must be."""

import json
import re

import keras
import numpy as np

from keras_mamsf.utils.layers import leaf_layers

FLOAT32_LAYERS = ("logits", "probs")  # build_model keeps the head's outputs in float32

# How close two computations of one value must be, by the dtype they were computed in. CPU kernels
# differ between machines (oneDNN picks AVX2 or AVX-512 paths, summation orders differ), so outputs
# agree to the dtype's precision, not bit for bit: float32 ~1e-5 relative (a few ulps after a deep
# network), float16 ~1e-3, bfloat16 ~1e-2. A reloaded 0.1 mixed_float16 model's output moved by
# 1.67e-6 between two machines against an old atol of 1e-6: that is why this table exists.
TOLERANCES = {
    "float32": {"rtol": 1e-5, "atol": 1e-6},
    "float16": {"rtol": 1e-3, "atol": 1e-4},
    "bfloat16": {"rtol": 1e-2, "atol": 1e-3},
}


def tolerance(dtype="float32"):
    """`{"rtol", "atol"}` for values computed in `dtype` (a dtype or a policy name such as
    "mixed_float16": its compute dtype decides)."""
    name = getattr(dtype, "name", str(dtype))
    return dict(TOLERANCES["float16" if "float16" in name and "bfloat16" not in name else
                           "bfloat16" if "bfloat16" in name else "float32"])


def assert_close(actual, expected, dtype="float32", atol=None, rtol=None, err_msg=""):
    """`actual` equals `expected` to the precision of `dtype`. `atol` / `rtol` widen it where a test
    compares results that legitimately drift further (several training steps, another algorithm);
    the caller says why."""
    bounds = tolerance(dtype)
    bounds["atol"] = max(bounds["atol"], atol or 0.0)
    bounds["rtol"] = max(bounds["rtol"], rtol or 0.0)
    np.testing.assert_allclose(np.asarray(actual, "float64"), np.asarray(expected, "float64"), err_msg=err_msg,
                               **bounds)


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
