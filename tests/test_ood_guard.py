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
    guard = fit_guard(fit, val, alpha=0.05, variations=False)
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


def _pooled_features(model, images):
    import keras

    extract = keras.Model(model.inputs[0], model.get_layer("momentum_anchor").input)
    return keras.ops.convert_to_numpy(extract(images)).astype("float64").mean(axis=(1, 2))


def test_with_a_model_the_score_is_the_larger_of_two_scaled_mahalanobis_distances(monkeypatch):
    """Against scikit-learn: a Ledoit-Wolf Gaussian on the input statistics and one on the backbone trunk's
    spatially pooled features, each distance divided by its (1 - alpha) quantile on the threshold images, the
    larger taken; the threshold is that score's quantile. A feature guard refuses to score without the model."""
    from sklearn.covariance import LedoitWolf

    from conftest import tiny_model

    model = tiny_model(input_shape=(64, 64, 1))
    fit, val = smooth_images(200, seed=2), smooth_images(60, seed=3)
    new = np.concatenate([smooth_images(4, seed=4), calibration_anchors(64, 1, seed=4)[:2]])
    monkeypatch.setattr(ood_score, "COMPONENT_BOUND", 1e6)
    guard = fit_guard(fit, val, alpha=0.05, model=model, variations=False)
    assert guard.has_features and guard.features.endswith(f"{len(guard.feature_mean)} channels averaged over 8x8")
    pixels = LedoitWolf().fit(numpy_statistics(fit).astype("float64"))
    features = LedoitWolf().fit(_pooled_features(model, fit))
    pixel_scale = 1 / np.quantile(pixels.mahalanobis(numpy_statistics(val).astype("float64")), 0.95)
    feature_scale = 1 / np.quantile(features.mahalanobis(_pooled_features(model, val)), 0.95)
    assert (guard.input_scale, guard.feature_scale) == (pytest.approx(pixel_scale, rel=2e-3),
                                                        pytest.approx(feature_scale, rel=2e-3))
    expected = np.maximum(pixel_scale * pixels.mahalanobis(numpy_statistics(new).astype("float64")),
                          feature_scale * features.mahalanobis(_pooled_features(model, new)))
    np.testing.assert_allclose(guard.score(new, model), expected, rtol=5e-3)
    assert guard.threshold == pytest.approx(np.quantile(guard.score(val, model), 0.95))
    with pytest.raises(ValueError, match="pass the model it was fitted with"):
        guard.score(new)


def test_a_feature_guard_round_trips_and_an_older_guard_file_still_loads(tmp_path):
    from conftest import tiny_model

    model = tiny_model(input_shape=(64, 64, 1))
    guard = fit_guard(smooth_images(80, seed=12), smooth_images(30, seed=13), model=model, source="with features")
    loaded = OODGuard.load(guard.save(tmp_path / "ood_guard.npz"))
    images = np.concatenate([smooth_images(3, seed=14), calibration_anchors(64, 1)[:2]])
    np.testing.assert_array_equal(loaded.score(images, model), guard.score(images, model))
    assert (loaded.features, loaded.variations, loaded.feature_scale) == (
        guard.features, guard.variations, guard.feature_scale)
    # A guard written before the feature part (format /1: the input statistics alone) loads and scores as it did.
    pixels_only = fit_guard(smooth_images(80, seed=12), smooth_images(30, seed=13), variations=False)
    fields = {name: getattr(pixels_only, name) for name in ("mean", "whitening", "threshold", "alpha", "grid",
                                                            "gradient_grid", "image_size", "fit_images",
                                                            "threshold_images", "shrinkage", "source")}
    np.savez(tmp_path / "old.npz", format="keras-mamsf/ood-guard/1", **{k: np.asarray(v) for k, v in fields.items()})
    old = OODGuard.load(tmp_path / "old.npz")
    assert not old.has_features and old.input_scale == 1.0 and old.variations == ""
    np.testing.assert_array_equal(old.score(images), pixels_only.score(images))


def test_benign_variations_are_what_their_names_say():
    from keras_mamsf.guard.variations import BENIGN_VARIATIONS, benign_variation, ordinary_variations

    images = np.repeat(smooth_images(3, seed=15), 3, axis=-1)
    for name in BENIGN_VARIATIONS:
        varied = benign_variation(images, name)
        assert varied.shape == images.shape and varied.dtype == np.float32, name
        assert (varied[..., 0] == varied[..., 2]).all() and 0 <= varied.min() and varied.max() <= 255, name
        assert 0 < np.abs(varied - images).mean() < 25, name  # changed, and only a little
    grey = images[..., 0]
    np.testing.assert_allclose(benign_variation(images, "gamma 0.8")[..., 0], 255 * (grey / 255) ** 0.8, rtol=1e-5)
    np.testing.assert_allclose(benign_variation(images, "brightness +10%")[..., 0], np.minimum(grey * 1.1, 255),
                               rtol=1e-5)
    mean = grey.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(benign_variation(images, "contrast 0.85")[..., 0], mean + 0.85 * (grey - mean),
                               rtol=1e-4)
    np.testing.assert_array_equal(ordinary_variations(images, seed=3), ordinary_variations(images, seed=3))
    with pytest.raises(ValueError, match="unknown variation 'sepia': choose one of JPEG 75"):
        benign_variation(images, "sepia")


def test_the_guard_lets_benign_variations_through_and_still_flags_the_strange():
    """Fitted with the ordinary differences, the guard flags few of the held-out images under each benign
    variation; without them, the same Gaussian flags nearly all the JPEG-30 copies of these very uniform
    stand-ins (all of them under 8 of the 10 variations, measured)."""
    from keras_mamsf.guard.variations import BENIGN_VARIATIONS, benign_variation

    fit, val, held_out = smooth_images(400, seed=16), smooth_images(150, seed=17), smooth_images(150, seed=18)
    guard = fit_guard(fit, val, alpha=0.01)
    plain = fit_guard(fit, val, alpha=0.01, variations=False)
    flagged = {name: np.mean(~guard.in_distribution(guard.score(benign_variation(held_out, name))))
               for name in BENIGN_VARIATIONS}
    assert max(flagged.values()) <= 0.2, flagged
    assert np.mean(~plain.in_distribution(plain.score(benign_variation(held_out, "JPEG 30")))) >= 0.9
    for images in (calibration_anchors(64, 1, seed=19), 255.0 - held_out[:20], held_out[:20, ::-1]):
        assert not guard.in_distribution(guard.score(images)).any()


def test_the_foreign_set_ships_with_packages_and_a_guard_with_imagenet_features_refuses_all_of_it():
    """At least 40 images of 5 kinds, none a radiograph; an ImageNet-start model's guard fitted on synthetic
    films flags every one of them (most by the features: the photographs and the fundus image pass the pixel
    part's threshold far less often)."""
    import keras_mamsf as mamsf
    from keras_mamsf.data.sources import open_root
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.guard import guard_from_source
    from keras_mamsf.guard.foreign_images import foreign_images, kind_group

    names, kinds, images, skipped = foreign_images(64, channels=1)
    groups = {kind_group(kind) for kind in kinds}
    assert len(images) >= 40 and len(set(names)) == len(names) and images.shape[1:] == (64, 64, 1)
    assert groups == {"photograph", "microscopy", "fundus", "document or graphic", "CT/MR/NM/US slice"}
    assert "retina.jpg" in names and all("(" in entry for entry in skipped)
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        write_synthetic(root, images=300, size=64, seed=0)
        model = mamsf.build_model(backbone="efficientnet_lite0", input_shape=(64, 64, 1), weights="imagenet",
                                  fusion_filters=8)
        guard = guard_from_source(open_root(root), 64, 1, model=model, where="synthetic")
    scores = guard.score(images, model)
    missed = [name for name, score in zip(names, scores) if score <= guard.threshold]
    assert not missed, missed
