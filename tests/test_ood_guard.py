"""The out-of-distribution guard (issue 25): its statistics against NumPy, its score against scikit-learn's
Mahalanobis distance, its threshold, its verdicts on inputs it must flag, its file, and the DICOM Modality
check in front of it."""

import numpy as np
import pytest

from keras_mamsf.guard import OODGuard, fit_guard, flagged_report
from keras_mamsf.guard.ood_guard import calibration_anchors
from keras_mamsf.layers import ood_score
from keras_mamsf.layers.ood_score import image_statistics, statistics_size


def smooth_images(count, size=64, seed=0):
    """Radiograph-like stand-ins: a bright centre column, darker sides, a vertical ramp, fine noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        base = 90 + 80 * np.exp(-((x - 0.5 + rng.normal(0, 0.03)) ** 2) / 0.02) + 40 * y * rng.uniform(0.5, 1.5)
        images.append(np.clip(base + rng.normal(0, 6, (size, size)), 0, 255))
    return np.stack(images)[..., None].astype("float32")


def numpy_statistics(images, grid=8, gradient_grid=4):
    grey = images.mean(axis=-1) / 255.0
    n, height, width = grey.shape

    def pooled(values, cells):
        rows, columns = values.shape[1] // cells, values.shape[2] // cells
        values = values[:, : rows * cells, : columns * cells]
        return values.reshape(n, cells, rows, cells, columns).mean(axis=(2, 4)).reshape(n, -1)

    clip = 6.0 / ood_score.DIFFERENCE_GAIN
    dx = np.minimum(np.abs(np.diff(grey, axis=2)), clip)[:, :-1, :]  # the 2x2 window: rows 0..H-2
    dy = np.minimum(np.abs(np.diff(grey, axis=1)), clip)[:, :, :-1]
    variance = grey.var(axis=(1, 2))
    contrast = np.stack([1 / np.sqrt(variance + ood_score.VARIANCE_FLOOR),
                         1 / np.sqrt(dx.mean(axis=(1, 2)) + ood_score.GRADIENT_FLOOR),
                         1 / np.sqrt(dy.mean(axis=(1, 2)) + ood_score.GRADIENT_FLOOR)], axis=1)
    return np.concatenate([pooled(grey, grid), pooled(grey**2, grid), pooled(dx, gradient_grid),
                           pooled(dy, gradient_grid), contrast], axis=1)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_statistics_match_numpy(channels):
    import keras

    images = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 1)).astype("float32")
    images = np.concatenate([images, smooth_images(2)])
    images = np.repeat(images, channels, axis=-1)
    found = keras.ops.convert_to_numpy(image_statistics(images))
    assert found.shape == (5, statistics_size()) == (5, 163)
    np.testing.assert_allclose(found, numpy_statistics(images), rtol=2e-4, atol=2e-5)


def test_the_score_is_the_squared_mahalanobis_distance_under_ledoit_wolf(monkeypatch):
    """With the components' bound lifted, the layer's score is scikit-learn's squared Mahalanobis distance under
    the Ledoit-Wolf covariance fitted on the same statistics; the threshold is the validation scores' quantile."""
    from sklearn.covariance import LedoitWolf

    fit, val, new = smooth_images(300, seed=2), smooth_images(60, seed=3), smooth_images(8, seed=4)
    guard = fit_guard(fit, val, alpha=0.05)
    assert guard.threshold == pytest.approx(np.quantile(guard.score(val), 0.95))
    monkeypatch.setattr(ood_score, "COMPONENT_BOUND", 1e6)
    reference = LedoitWolf().fit(numpy_statistics(fit).astype("float64"))
    expected = reference.mahalanobis(numpy_statistics(new).astype("float64"))
    np.testing.assert_allclose(guard.score(new), expected, rtol=2e-3)
    assert guard.shrinkage == pytest.approx(reference.shrinkage_, rel=1e-3)


def test_the_guard_flags_what_is_not_like_its_training_images():
    fit, val, held_out = smooth_images(400, seed=5), smooth_images(100, seed=6), smooth_images(200, seed=7)
    guard = fit_guard(fit, val, alpha=0.01)
    assert np.mean(~guard.in_distribution(guard.score(held_out))) <= 0.05
    strange = {"black, white, grey, noise": calibration_anchors(64, 1, seed=8),
               "inverted": 255.0 - held_out[:20], "upside down": held_out[:20, ::-1],
               "rotated 90 degrees": np.rot90(held_out[:20], axes=(1, 2))}
    for name, images in strange.items():
        assert not guard.in_distribution(guard.score(images)).any(), name
    report = flagged_report(guard.score(strange["inverted"][:3]), guard.threshold, ["a", "b", "c"])
    assert (report["flagged"], report["images"], report["flagged_images"]) == (3, 3, ["a", "b", "c"])


def test_the_guard_file_round_trips_and_a_bad_one_fails_in_one_line(tmp_path):
    guard = fit_guard(smooth_images(100, seed=9), smooth_images(30, seed=10), source="test images")
    loaded = OODGuard.load(guard.save(tmp_path / "ood_guard.npz"))
    images = smooth_images(4, seed=11)
    np.testing.assert_array_equal(loaded.score(images), guard.score(images))
    assert (loaded.threshold, loaded.source, loaded.image_size, loaded.fit_images) == (
        guard.threshold, "test images", 64, 100)
    (tmp_path / "bad.npz").write_bytes(b"not a guard")
    with pytest.raises(ValueError, match="not a readable OOD guard") as error:
        OODGuard.load(tmp_path / "bad.npz")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="alpha must be in"):
        fit_guard(images, images, alpha=1.5)


def test_a_dicom_whose_modality_is_not_a_radiograph_is_refused_in_one_line():
    from pydicom.data import get_testdata_file

    from keras_mamsf.data.dicom import DicomError, read_dicom

    for name, modality in (("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")):
        with pytest.raises(DicomError, match=f"Modality is {modality}, not a radiograph") as error:
            read_dicom(get_testdata_file(name))
        assert "--force" in str(error.value) and "\n" not in str(error.value)
    assert read_dicom(get_testdata_file("CT_small.dcm"), force=True).shape[:2] == (128, 128)
