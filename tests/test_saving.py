"""Acceptance 6: `.keras` round trip with safe_mode, and resuming with the same anchor state."""

import os

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf

from conftest import batch, copy_dropout_seeds, tiny_model, values
from harness import assert_close


def anchor_state(model):
    return values(model.anchor_layers[0].anchor_variables)


@pytest.mark.parametrize("anchor", ["branch", "shadow"])
def test_round_trip_and_resume(tmp_path, anchor):
    keras.utils.set_random_seed(11)
    model = tiny_model(anchor, anchor_decay=0.7, anchor_warmup=True)
    # Eager steps: tracing Adam over an EfficientNet graph costs more on CPU than the test itself.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    x, y = batch(8)
    for _ in range(2):
        model.train_on_batch(x, y)
    path = mamsf.save_model(model, tmp_path / "mid.keras")
    assert os.listdir(tmp_path) == ["mid.keras"]  # nothing temporary left behind

    loaded = mamsf.load_model(path)
    assert type(loaded) is mamsf.MAMSFClassifier and loaded.anchor_mode == anchor
    layer = loaded.anchor_layers[0]
    assert (layer.decay, layer.warmup, layer.mode) == (0.7, True, anchor)
    assert int(layer.step.numpy()) == 2
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(anchor_state(loaded), anchor_state(model), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(values(loaded.weights), values(model.weights), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(a is not o for o, a in loaded.anchor_pairs())

    # Resume: both continue two steps; the optimizer state, anchor and counter came back.
    assert int(loaded.optimizer.iterations.numpy()) == 2
    loaded.run_eagerly = True
    copy_dropout_seeds(model, loaded)
    for _ in range(2):
        model.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
    assert int(loaded.anchor_layers[0].step.numpy()) == 4
    assert int(loaded.optimizer.iterations.numpy()) == 4
    for a, b in zip(anchor_state(loaded), anchor_state(model), strict=True):
        assert_close(a, b, atol=1e-5)  # two steps of Adam apart


def test_load_refuses_legacy_and_missing_files(tmp_path):
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"model\.h5: legacy HDF5 model files are refused"):
        mamsf.load_model(legacy)
    with pytest.raises(FileNotFoundError, match="nope.keras: no such model file"):
        mamsf.load_model(tmp_path / "nope.keras")
    with pytest.raises(ValueError, match="use a name ending in .keras"):
        mamsf.save_model(tiny_model(None), tmp_path / "model.h5")


def test_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")
    model = tiny_model(None)

    def broken_save(path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        mamsf.save_model(model, target)
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]
