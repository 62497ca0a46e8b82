"""Issue 4: the ChestMNIST .npz reader (MedMNIST's file layout) and its errors."""

import numpy as np
import pytest

from keras_mamsf.data.chestmnist import chestmnist_dataset, read_chestmnist
from keras_mamsf.data.nih import DataError


def write_npz(path, n=6, size=28, drop=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (rng.random((n, 14)) < 0.3).astype(np.uint8)
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return arrays


def test_reads_splits_and_feeds_the_pipeline(tmp_path):
    arrays = write_npz(tmp_path / "chestmnist.npz")
    data = read_chestmnist(str(tmp_path / "chestmnist.npz"))
    np.testing.assert_array_equal(data["val"][0], arrays["val_images"])
    np.testing.assert_array_equal(data["test"][1], arrays["test_labels"].astype("float32"))
    x, y = next(iter(chestmnist_dataset(str(tmp_path / "chestmnist.npz"), "test", 56, batch_size=6)))
    assert x.shape == (6, 56, 56, 3) and y.shape == (6, 14)
    # 28 -> 56 px area resize of a constant block stays that constant: check the mean is preserved
    np.testing.assert_allclose(x.numpy()[..., 0].mean(axis=(1, 2)), arrays["test_images"].mean(axis=(1, 2)), atol=0.5)
    np.testing.assert_array_equal(y.numpy(), arrays["test_labels"])


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such file; download chestmnist.npz"):
        read_chestmnist(str(tmp_path / "none.npz"))
    write_npz(tmp_path / "partial.npz", drop="val_labels")
    with pytest.raises(DataError, match="missing array.s. val_labels"):
        read_chestmnist(str(tmp_path / "partial.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable .npz file"):
        read_chestmnist(str(tmp_path / "junk.npz"))
