"""Acceptance 7 and the backbone options: every variant splits by layer names; weights; grayscale."""

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.backbones import build_backbone, load_backbone

from conftest import IMAGE, batch, set_normalization_statistics, tiny_model
from harness import assert_close

LAST_STAGE = {name: ("block6" if "v2" in name else "block4" if name == "test_efficientnet" else "block7")
              for name in mamsf.BACKBONES}


@pytest.mark.parametrize("name", sorted(mamsf.BACKBONES))
def test_every_variant_builds_and_reports_what_it_anchors(name):
    model = tiny_model("branch", backbone=name)
    names = model.anchored_layer_names()
    stage = LAST_STAGE[name]
    print(f"{name}: anchors {len(model.anchor_pairs())} variables in {names[0]} .. {names[-1]}")
    assert names[0].startswith(f"{stage}a_") and names[-1] == "top_activation"
    assert {"top_conv", "top_bn"} <= set(names)
    assert all(n.startswith((stage, "top_")) for n in names)
    trunk = model.get_layer("trunk")
    assert not any(layer.name.startswith((stage, "top_")) for layer in trunk.layers)
    assert any(layer.name.startswith(f"block{int(stage[-1]) - 1}") for layer in trunk.layers)
    expected = sum(len(layer.weights) for layer in model.anchor_layers[0].block.layers)
    assert len(model.anchor_pairs()) == expected
    probs = model(batch(2)[0]).numpy()
    assert probs.shape == (2, 3) and np.all((probs >= 0) & (probs <= 1))


def test_custom_anchor_layers_and_their_errors():
    backbone = build_backbone("efficientnetb0", (IMAGE, IMAGE, 3))
    assert backbone.stage_names == ("stem", *(f"block{n}" for n in range(1, 8)), "top")
    assert backbone.final_block == ("block7", "top") and backbone.stage_before_final_block() == "block6"
    _, block, anchored = backbone.split(["block6", "block7", "top"])  # stage names
    assert block.layers[1].name == "block6a_expand_conv" and anchored is None  # the whole block
    _, _, by_prefix = backbone.split(("block6", "block7", "top_"))  # 0.2's layer-name prefixes still work
    assert by_prefix is None
    with pytest.raises(ValueError,
                       match="no stage or layer of efficientnetb0 is called nope; its stages: stem, block1"):
        backbone.split(["nope"])
    with pytest.raises(ValueError, match=r"start at block6b_project_conv, inside a residual block of efficientnetb0"):
        backbone.split(["block6b_project"])


def test_an_earlier_stage_is_anchored_alone():
    """("block3",) on test_efficientnet (B0's "block6"): the block runs from stage 3 to the output,
    but only stage 3 gets an anchor; stage 4 and top run with their online weights on the anchor
    path too."""
    model = tiny_model("inplace", anchor_layers=("block3",), anchor_warmup=False, anchor_decay=0.5)
    names = model.anchored_layer_names()
    assert names and all(name.startswith("block3") for name in names)
    layer = model.anchor_layers[0]
    assert layer.block.get_layer("top_conv") is not None  # in the block, not anchored
    expected = sum(len(sub.weights) for sub in layer.block.layers if sub.name.startswith("block3"))
    assert len(model.anchor_pairs()) == expected
    top = layer.block.get_layer("top_conv").kernel
    stage3 = layer.block.get_layer("block3a_expand_conv").kernel
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    before = top.numpy().copy()
    x, y = batch(4)
    model.train_on_batch(x, y)
    # inplace with decay 0.5 halves stage 3's step; top's full SGD step stays
    assert not np.allclose(top.numpy(), before)
    anchor = dict((id(o), a) for o, a in model.anchor_pairs())[id(stage3)]
    assert_close(stage3.numpy(), anchor.numpy())
    stage3_layers = build_backbone("test_efficientnet", (IMAGE, IMAGE, 3)).stage("block3").layers
    assert model.get_layer("momentum_anchor").get_config()["anchored"] == list(stage3_layers)
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        load_backbone("resnet50", (IMAGE, IMAGE, 3))


def test_imagenet_offline_fails_in_one_line(monkeypatch):
    from keras.src.applications import efficientnet

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] no network")

    monkeypatch.setattr(efficientnet.file_utils, "get_file", offline)
    with pytest.raises(RuntimeError) as error:
        mamsf.build_model(input_shape=(IMAGE, IMAGE, 3), weights="imagenet")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("could not get the ImageNet weights for efficientnetb0 (URL fetch failure")
    assert "weights=None" in message and "weights=PATH" in message


def _offline_imagenet(monkeypatch):
    """Keras' ImageNet build without the network: `get_file` returns a name and `load_weights` sets
    the Normalization to ImageNet's statistics (as Keras' weight file does; the rest keeps its
    random init)."""
    from keras.src.applications import efficientnet

    def fake_load_weights(model, path):
        normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
        set_normalization_statistics(normalization, [0.485, 0.456, 0.406],
                                     np.asarray(efficientnet.IMAGENET_STDDEV_RGB) ** 2)

    monkeypatch.setattr(efficientnet.file_utils, "get_file", lambda name, *args, **kwargs: name)
    monkeypatch.setattr(keras.Model, "load_weights", fake_load_weights)


def _input_dependent(model, images):
    """BatchNorm statistics from `images`, so that outputs depend on the input (at init they barely do)."""
    from keras_mamsf.training.precise_bn import reestimate_batchnorm

    reestimate_batchnorm(model, [images])
    return model


def test_an_imagenet_backbone_reloads_to_the_same_function(monkeypatch, tmp_path):
    """Keras' ImageNet EfficientNet has one more layer than its weights=None build (a Rescaling after the
    Normalization); a saved model is rebuilt with weights=None, so the scaling is folded into the
    Normalization at build time, and the saved model reloads to the function it had."""
    from keras_mamsf.backbones.efficientnet import _imagenet_scaling_folded

    _offline_imagenet(monkeypatch)
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(1).uniform(0, 255, (8, IMAGE, IMAGE, 3)).astype("float32")
    keras_imagenet = keras.applications.EfficientNetB0(include_top=False, weights="imagenet",
                                                       input_shape=(IMAGE, IMAGE, 3))
    assert sum(isinstance(layer, keras.layers.Rescaling) for layer in keras_imagenet.layers) == 2
    _input_dependent(keras_imagenet, images)
    expected = keras_imagenet.predict(images, verbose=0)
    folded = _imagenet_scaling_folded("efficientnetb0", keras_imagenet, (IMAGE, IMAGE, 3))
    plain = load_backbone("efficientnetb0", (IMAGE, IMAGE, 3))
    assert [type(layer) for layer in folded.layers] == [type(layer) for layer in plain.layers]
    got = folded.predict(images, verbose=0)
    # float32 rounding of one divided variance, amplified through B0 (without the fold: 0.77 of the largest value)
    assert np.abs(expected - got).max() <= 1e-3 * np.abs(expected).max()

    model = _input_dependent(mamsf.build_model(input_shape=(IMAGE, IMAGE, 3), weights="imagenet", fusion_filters=8),
                             images)
    path = mamsf.save_model(model, tmp_path / "imagenet.keras")
    logits = [keras.Model(m.inputs, m.get_layer("logits").output).predict(images, verbose=0)
              for m in (model, mamsf.load_model(path, compile=False))]
    assert logits[0].std(axis=0).min() > 1e-3  # outputs that depend on the input
    assert_close(logits[1], logits[0], atol=1e-5)  # folded affine: another summation order


def test_a_local_copy_of_keras_imagenet_file_loads_to_the_same_function(monkeypatch, tmp_path):
    """Keras adds its ImageNet-only Rescaling for the string "imagenet" alone; the same weights from a
    local `*_notop.h5` (the offline route the error message names) get it folded in too, once."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    images = np.random.default_rng(1).uniform(0, 255, (8, IMAGE, IMAGE, 3)).astype("float32")
    with monkeypatch.context() as patch:
        _offline_imagenet(patch)
        keras.utils.set_random_seed(0)
        keras_imagenet = _input_dependent(keras.applications.EfficientNetB0(
            include_top=False, weights="imagenet", input_shape=(IMAGE, IMAGE, 3)), images)
    expected = keras_imagenet.predict(images, verbose=0)
    path = tmp_path / "efficientnetb0_notop.h5"  # the format and name of Keras' published file
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, keras_imagenet)
    local = load_backbone("efficientnetb0", (IMAGE, IMAGE, 3), weights=str(path))
    # measured 1.2e-4 of the largest value apart; without the fold 0.92
    assert np.abs(local.predict(images, verbose=0) - expected).max() <= 1e-3 * np.abs(expected).max()

    # the folded backbone saved by path keeps its function: no second fold
    resaved = tmp_path / "folded.weights.h5"
    local.save_weights(resaved)
    again = load_backbone("efficientnetb0", (IMAGE, IMAGE, 3), weights=str(resaved))
    np.testing.assert_array_equal(again.predict(images, verbose=0), local.predict(images, verbose=0))


def test_weights_from_a_local_file(tmp_path):
    source = load_backbone("test_efficientnet", (IMAGE, IMAGE, 3))
    path = tmp_path / "test_efficientnet_notop.weights.h5"
    source.save_weights(path)
    model = tiny_model(None, weights=str(path))
    trunk = model.get_layer("trunk")
    np.testing.assert_array_equal(
        trunk.get_layer("stem_conv").kernel.numpy(), source.get_layer("stem_conv").kernel.numpy()
    )
    np.testing.assert_array_equal(
        model.anchor_layers[0].block.get_layer("top_conv").kernel.numpy(), source.get_layer("top_conv").kernel.numpy()
    )
    with pytest.raises(FileNotFoundError, match="missing.weights.h5 does not exist"):
        tiny_model(None, weights=str(tmp_path / "missing.weights.h5"))


def test_grayscale_input_equals_tiled_rgb():
    rgb = tiny_model("branch")
    gray = tiny_model("branch", input_shape=(IMAGE, IMAGE, 1))
    assert gray.input_shape == (None, IMAGE, IMAGE, 1)
    gray.set_weights(rgb.get_weights())
    x = batch(2, channels=1)[0]
    assert_close(gray.predict(x, verbose=0), rgb.predict(np.repeat(x, 3, axis=-1), verbose=0))
    with pytest.raises(ValueError, match="input_shape must have 1 \\(grayscale\\) or 3 channels"):
        tiny_model("branch", input_shape=(IMAGE, IMAGE, 4))


def test_lite_backbone_has_no_swish_and_no_squeeze_excite():
    backbone = load_backbone("efficientnet_lite0", (IMAGE, IMAGE, 3))
    reference = load_backbone("efficientnetb0", (IMAGE, IMAGE, 3))
    activations = {layer.get_config()["activation"] for layer in backbone.layers
                   if isinstance(layer, keras.layers.Activation)}
    assert activations == {"relu6"}
    assert not [layer.name for layer in backbone.layers if "_se_" in layer.name or
                isinstance(layer, keras.layers.Multiply)]
    assert [layer.name for layer in reference.layers if layer.name.endswith("_se_squeeze")]  # B0 has them
    # its ImageNet weights come from a package, offline (tests/test_pretrained.py); the test backbone has none
    with pytest.raises(RuntimeError, match="test_efficientnet has no ImageNet weights"):
        load_backbone("test_efficientnet", (IMAGE, IMAGE, 3), weights="imagenet")


def test_the_test_backbone_is_b0_s_final_stage_on_a_short_trunk():
    """test_efficientnet (what `tiny_model` and the CLI tests build) anchors what B0 anchors: one
    expansion block with squeeze-and-excitation and swish, then top; its trunk is three stages."""
    small = build_backbone("test_efficientnet", (IMAGE, IMAGE, 3))
    b0 = build_backbone("efficientnetb0", (IMAGE, IMAGE, 3))
    _, small_block, _ = small.split()
    _, b0_block, _ = b0.split()

    def kinds(block):
        return [(type(layer).__name__, layer.name.split("_", 1)[1]) for layer in block.layers[1:]]

    assert kinds(small_block) == kinds(b0_block)
    assert small.model.count_params() < b0.model.count_params() / 50
    with pytest.raises(RuntimeError, match="test_efficientnet has no ImageNet weights"):
        load_backbone("test_efficientnet", (IMAGE, IMAGE, 3), weights="imagenet")
