"""Issue 22, acceptance 5: the backbone seam is real. A toy family (three conv stages, declared
stages, no EfficientNet names) registered from outside the package builds, anchors its last
stage in every mode, trains, saves and exports to TFLite."""

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.anchor.modes import MODES
from keras_mamsf.backbones import Backbone, Stage, register_backbone

from conftest import batch

CLASSES = 14  # the export carries ChestX-ray14's labels
STAGES = {"s1": 8, "s2": 12, "s3": 16}


def toy_cnn(input_shape, weights=None):
    """Three conv-BN-ReLU stages; the last one is the final block."""
    if weights is not None:
        raise ValueError("toy_cnn has no pretrained weights")
    image = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 255, name="scale")(image)
    for name, filters in STAGES.items():
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    stages = tuple(Stage(name, (f"{name}_conv", f"{name}_bn", f"{name}_relu")) for name in STAGES)
    return Backbone(keras.Model(image, x, name="toy_cnn"), stages, final_block=("s3",))


@pytest.fixture(autouse=True)
def registered():
    register_backbone("toy_cnn", toy_cnn)
    yield
    mamsf.BACKBONES.pop("toy_cnn")


def toy_model(anchor, **kwargs):
    return mamsf.build_model(backbone="toy_cnn", input_shape=(32, 32, 1), num_classes=CLASSES, anchor=anchor,
                             fusion_filters=8, fusion_kernels=(1, 3), dropout=0.0, **kwargs)


def trained(anchor, **kwargs):
    keras.utils.set_random_seed(0)
    model = toy_model(anchor, anchor_decay=0.5, anchor_warmup=False, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    x, y = batch(8, channels=1, classes=CLASSES)
    for _ in range(2):
        model.train_on_batch(x, y)
    return model


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_toy_family_anchors_its_last_stage_and_trains_in_every_mode(mode):
    model = trained(mode)
    layer = model.anchor_layers[0]
    assert [sub.name for sub in layer.block.layers[1:]] == ["s3_conv", "s3_bn", "s3_relu"]
    assert not any(sub.name.startswith("s3") for sub in model.get_layer("trunk").layers)
    if MODES[mode].has_anchor:
        assert model.anchored_layer_names() == ["s3_conv", "s3_bn", "s3_relu"]
        assert len(model.anchor_pairs()) == 6  # conv kernel, bias; BN gamma, beta, moving mean, variance
        assert int(layer.step.numpy()) == 2
        moved = [float(np.abs(o.numpy() - a.numpy()).max()) for o, a in model.anchor_pairs()]
        assert (max(moved) == 0.0) == MODES[mode].anchor_to_online, moved  # inplace: online follows the anchor
    else:
        assert model.anchor_pairs() == [] and layer.step is None
    probs = model.predict(batch(2, channels=1)[0], verbose=0)
    assert probs.shape == (2, CLASSES) and np.isfinite(probs).all()


def test_a_toy_family_anchors_by_stage_name():
    model = toy_model("branch", anchor_layers=["s2"])
    assert model.anchored_layer_names() == ["s2_conv", "s2_bn", "s2_relu"]
    assert [sub.name for sub in model.anchor_layers[0].block.layers[1:4]] == ["s2_conv", "s2_bn", "s2_relu"]
    whole = toy_model("branch", anchor_layers=list(STAGES))
    assert len(whole.anchor_pairs()) == 18 and whole.get_layer("trunk").layers[-1].name == "scale"
    with pytest.raises(ValueError, match="no stage or layer of toy_cnn is called s9; its stages: s1, s2, s3"):
        toy_model("branch", anchor_layers=["s9"])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_toy_family_saves_and_exports_to_tflite(tmp_path, mode):
    from keras_mamsf.export import export_model
    from keras_mamsf.inference.formats import TFLITE, load_runner

    from harness import assert_close

    model = trained(mode)
    path = mamsf.save_model(model, tmp_path / "toy.keras")
    reloaded = mamsf.load_model(path)
    assert reloaded.get_config()["backbone"] == "toy_cnn" and reloaded.anchor_mode == MODES[mode].value
    x = batch(4, channels=1)[0]
    assert_close(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    report = export_model(path, tmp_path / "out", formats=[TFLITE], quantize=["float32"], parity_images=16)
    assert report["ok"], report["artifacts"]
    probs = load_runner(tmp_path / "out" / "model_float32.tflite").predict(x)["probs"]
    assert_close(probs, model.predict(x, verbose=0), atol=1e-4)  # the export gate's bound
