"""The model is its build arguments: dtype discipline in every layer, config round trips,
and save / reload under mixed precision (acceptance 1 of issue 14)."""

import os

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.utils.weights import copy_weights

from conftest import CLASSES, IMAGE, batch, tiny_model, values
from harness import (
    FLOAT32_LAYERS,
    assert_close,
    run_precision_test,
    run_serialization_test,
    sublayer_dtypes,
)

MIXED = ["mixed_float16", "mixed_bfloat16"]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def infer(model, x):
    """Inference outputs without `predict` (whose graph trace costs more than these tests)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def small_block(dtype):
    return keras.Sequential(
        [keras.Input((4, 4, 6)), keras.layers.Conv2D(5, 3, padding="same", name="top_conv", dtype=dtype),
         keras.layers.BatchNormalization(name="top_bn", dtype=dtype)],
        name="final_block",
    )


LAYERS = {
    "GrayscaleToRGB": (lambda dtype: mamsf.GrayscaleToRGB(dtype=dtype), (2, 4, 4, 1)),
    "MultiScaleFusion": (lambda dtype: mamsf.MultiScaleFusion(4, (1, 3), branch_filters=3, dtype=dtype), (2, 4, 4, 6)),
    "MomentumAnchor": (lambda dtype: mamsf.MomentumAnchor(small_block(dtype), mode="branch", dtype=dtype), (2, 4, 4,
                                                                                                            6)),
}


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_sub_layer_computes_in_the_layer_policy(name, policy, float32_policy):
    make_layer, shape = LAYERS[name]
    run_precision_test(make_layer, np.ones(shape, "float32"), policy)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_config_round_trip(name):
    make_layer, shape = LAYERS[name]
    layer = make_layer("mixed_bfloat16")
    inputs = np.random.default_rng(0).uniform(size=shape).astype("float32")
    layer(inputs)
    revived = run_serialization_test(layer, inputs)
    assert sublayer_dtypes(revived) == sublayer_dtypes(layer)
    assert revived.dtype_policy.name == "mixed_bfloat16"


@pytest.mark.parametrize("policy", MIXED)
def test_build_model_puts_every_layer_in_the_policy(policy, float32_policy):
    model = tiny_model(dtype_policy=policy, input_shape=(IMAGE, IMAGE, 1))
    dtypes = sublayer_dtypes(model)
    assert {dtypes[name] for name in FLOAT32_LAYERS} == {("float32", "float32")}
    keras_policy = keras.dtype_policies.get(policy)
    others = {v for name, v in dtypes.items() if name not in FLOAT32_LAYERS}
    assert others == {(keras_policy.compute_dtype, "float32")}
    assert "grayscale_to_rgb" in dtypes and "reduce_conv" in dtypes and "block4a_project_conv" in dtypes


def test_model_config_is_its_constructor_arguments():
    """keras-hub's way: `get_config()` is the constructor's arguments (less the load-time `weights`)
    plus name, trainable and the dtype policy; `from_config` is `cls(**config)`."""
    import inspect

    from keras_mamsf.models.mamsf_classifier import LOAD_TIME_ARGUMENTS

    model = tiny_model("shadow", anchor_decay=0.99, fusion_kernels=(1, 3))
    assert type(model) is mamsf.MAMSFClassifier
    config = model.get_config()
    assert config == {
        "backbone": "test_efficientnet", "input_shape": [IMAGE, IMAGE, 3], "num_classes": CLASSES, "anchor": "shadow",
        "anchor_decay": 0.99, "anchor_warmup": True, "anchor_layers": None, "fusion_filters": 8,
        "fusion_kernels": [1, 3], "dropout": 0.0, "anchor_warmup_gamma": 1.0, "anchor_warmup_power": 2.0 / 3.0,
        "fusion_activation": "swish", "name": "mamsf_test_efficientnet_shadow", "trainable": True,
        "dtype": keras.dtype_policies.serialize(keras.dtype_policies.get("float32")),
    }
    parameters = set(inspect.signature(mamsf.MAMSFClassifier.__init__).parameters) - {"self", "kwargs"}
    assert set(config) | set(LOAD_TIME_ARGUMENTS) == parameters | {"trainable"}
    revived = mamsf.MAMSFClassifier.from_config(config)
    assert revived.get_config() == config
    assert revived.anchor_layers[0].decay == 0.99
    copy_weights(model, revived)  # by path, across two builds in one session
    x, _ = batch(2)
    np.testing.assert_array_equal(infer(revived, x), infer(model, x))


def test_copy_weights_names_what_does_not_match():
    with pytest.raises(ValueError, match=r"weights do not match by path \(only in the source: \['fusion/branch_5x5"):
        copy_weights(tiny_model(), tiny_model(fusion_kernels=(1, 3)))


@pytest.mark.parametrize("policy", MIXED)
def test_save_and_reload_keeps_the_policy_and_the_loss_scale(tmp_path, policy, float32_policy):
    keras.utils.set_random_seed(5)
    model = tiny_model("branch", dtype_policy=policy)
    optimizer = keras.optimizers.Adam(1e-3)
    if policy == "mixed_float16":  # a scale no default would give, so a fresh optimizer shows
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**9)
    model.compile(optimizer=optimizer, loss="binary_crossentropy", run_eagerly=True)  # eager: no 45 s trace
    x, y = batch(4)
    model.train_on_batch(x, y)
    before = sublayer_dtypes(model)
    path = mamsf.save_model(model, tmp_path / "mixed.keras")

    loaded = mamsf.load_model(path)
    assert loaded.dtype_policy.name == policy
    assert sublayer_dtypes(loaded) == before
    np.testing.assert_array_equal(infer(loaded, x), infer(model, x))
    fresh = mamsf.load_model(path, compile=False)
    fresh.compile(optimizer="adam", loss="binary_crossentropy")
    is_scaled = isinstance(fresh.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (policy == "mixed_float16")
    if policy == "mixed_float16":
        assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
        scale = float(model.optimizer.dynamic_scale.numpy())
        assert scale <= 2.0**9 and float(loaded.optimizer.dynamic_scale.numpy()) == scale  # not a fresh 2**15
        loaded.run_eagerly = True
        loaded.train_on_batch(x, y)
        model.train_on_batch(x, y)
        assert float(loaded.optimizer.dynamic_scale.numpy()) == float(model.optimizer.dynamic_scale.numpy())
        assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
        assert int(loaded.anchor_layers[0].step.numpy()) == int(model.anchor_layers[0].step.numpy())


def test_a_file_saved_by_release_0_1_still_loads():
    """`tests/data/legacy_v0_tiny.keras` was written by keras-mamsf 0.1.0
    (`tests/data/make_legacy_v0.py`): a plain functional config, mixed_float16 layers."""
    expected = np.load(os.path.join(DATA, "legacy_v0_tiny_expected.npz"))
    model = mamsf.load_model(os.path.join(DATA, "legacy_v0_tiny.keras"))
    assert type(model) is mamsf.MomentumAnchoredModel and model.anchor_mode == "branch"
    assert model.build_arguments is None
    assert int(model.anchor_layers[0].step.numpy()) == 1
    assert_close(model.predict(expected["x"], verbose=0), expected["probs"], "mixed_float16")
    assert all(np.isfinite(v).all() for v in values(model.weights))


def test_a_file_saved_before_the_floor_plan_change_loads_predicts_and_exports(tmp_path):
    """`tests/data/v0_2_tiny.keras` was written by the code before issue 22 (`tests/data/make_v0_2.py`,
    commit 2d125f8): a `MomentumAnchoredModel` whose config is `build_model`'s arguments. It loads as
    the config-driven `MAMSFClassifier`, gives the saved outputs, and exports."""
    from keras_mamsf.export import export_model
    from keras_mamsf.inference.formats import TFLITE, load_runner

    expected = np.load(os.path.join(DATA, "v0_2_tiny_expected.npz"))
    path = os.path.join(DATA, "v0_2_tiny.keras")
    model = mamsf.load_model(path)
    assert type(model) is mamsf.MAMSFClassifier and model.anchor_mode == "branch"
    assert model.build_arguments["backbone"] == "test_efficientnet" and model.anchor_layers[0].decay == 0.9
    assert int(model.anchor_layers[0].step.numpy()) == 1
    assert_close(infer(model, expected["x"]), expected["probs"], "float32")
    report = export_model(path, tmp_path, formats=[TFLITE], quantize=["float32"], parity_images=8)
    assert report["ok"], report["failed"]
    probs = load_runner(tmp_path / "model_float32.tflite").predict(expected["x"])["probs"]
    assert_close(probs, expected["probs"], "float32", atol=1e-4)  # the export gate's own bound
