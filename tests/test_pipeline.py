"""Issue 4: the tf.data pipeline from NIH records: pixels, labels, determinism, class-aware sampling."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mamsf.data import nih
from keras_mamsf.data.pipeline import class_aware_weights, make_dataset
from keras_mamsf.data.synth import write_synthetic


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline") / "root"
    write_synthetic(str(root), images=40, size=64, seed=5)
    return nih.read_nih(str(root)).records


def batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_eval_batches_equal_an_independent_decode_and_area_resize(records):
    (x, y), *_ = batches(make_dataset(records[:8], image_size=32, batch_size=8))
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and y.shape == (8, 14)
    for image, label, record in zip(x, y, records[:8]):
        pixels = tf.io.decode_png(tf.io.read_file(record.path)).numpy()[..., 0].astype("float64")
        expected = pixels.reshape(32, 2, 32, 2).mean(axis=(1, 3))  # 64 -> 32 px: 2x2 block means
        np.testing.assert_allclose(image[..., 0], expected, atol=1e-3)
        assert np.array_equal(image[..., 0], image[..., 2])
        np.testing.assert_array_equal(label, record.labels)


def test_training_is_deterministic_per_seed_and_eval_is_not_augmented(records):
    first = batches(make_dataset(records, 32, 8, training=True, seed=1))
    again = batches(make_dataset(records, 32, 8, training=True, seed=1))
    other = batches(make_dataset(records, 32, 8, training=True, seed=2))
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][0], other[0][0])
    plain = batches(make_dataset(records, 32, 8))
    order = {r.path: i for i, r in enumerate(records)}
    assert [order[r.path] for r in records] == list(range(len(records)))
    assert np.array_equal(np.concatenate([y for _, y in plain]), np.stack([r.labels for r in records]))
    # training sees every image once per epoch (a permutation of the labels), augmented
    every_label = np.stack([r.labels for r in records])
    assert sorted(map(tuple, np.concatenate([y for _, y in first]))) == sorted(map(tuple, every_label))
    cached = batches(make_dataset(records, 32, 8, cache=True))
    for (xa, _), (xb, _) in zip(plain, cached):
        np.testing.assert_array_equal(xa, xb)


def test_class_aware_sampling_flattens_the_label_distribution(records):
    labels = np.stack([r.labels for r in records])
    weights = class_aware_weights(labels)
    np.testing.assert_allclose(weights.sum(), 1.0)
    rare = int(np.argmin(np.where(labels.sum(axis=0) > 0, labels.sum(axis=0), np.inf)))
    holders = labels[:, rare] > 0
    assert weights[holders].sum() > holders.mean()  # the rarest label is drawn more often than its share
    dataset = make_dataset(records, 32, 40, training=True, seed=0, class_aware=True, augment=False)
    seen = np.concatenate([np.concatenate([y for _, y in batches(dataset)]) for _ in range(5)])
    assert len(seen) == 5 * len(records)
    assert seen[:, rare].mean() > labels[:, rare].mean()


def test_bad_calls_are_refused(records):
    with pytest.raises(ValueError, match="no records"):
        make_dataset([], 32, 8)
    with pytest.raises(ValueError, match="cache and class_aware"):
        make_dataset(records, 32, 8, training=True, cache=True, class_aware=True)
    with pytest.raises(ValueError, match="unknown augmentation setting"):
        make_dataset(records, 32, 8, training=True, augment={"mixup": 0.2})


def test_rgba_png_is_read_as_its_luminance(tmp_path):
    """A few NIH files are RGBA: they decode to grayscale (ITU-R 601 luma), not to their red channel."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 255
    path = tmp_path / "rgba.png"
    path.write_bytes(tf.io.encode_png(rgba).numpy())
    record = nih.Record(image="rgba.png", labels=np.zeros(14, "float32"), patient="1", path=str(path))
    (x, _), = batches(make_dataset([record], image_size=32, batch_size=1, channels=1))
    np.testing.assert_allclose(x[0, ..., 0], 0.299 * 200 + 0.587 * 100 + 0.114 * 50, atol=1.0)


@pytest.mark.parametrize("kind", ["png8", "png16", "png_rgb", "jpeg", "jpeg_rgb"])
def test_predict_preprocessing_equals_training_s_pixels(tmp_path, kind):
    """Issue 26: `load_image` (Pillow + NumPy, what `mamsf predict` runs on a device) gives the pixels the
    training pipeline (TensorFlow's decode and area resize) gives, within one grey level."""
    import tensorflow as tf
    from PIL import Image

    from keras_mamsf.data.images import load_image
    from keras_mamsf.data.pipeline import decode_and_resize

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:100, 0:90]
    smooth = (np.sin(x / 9.0) + np.cos(y / 7.0) + 2.0) * 60 + rng.integers(0, 15, (100, 90))
    path = tmp_path / ("image.jpg" if kind.startswith("jpeg") else "image.png")
    if kind == "png16":
        Image.fromarray((smooth * 257).astype("uint16")).save(path)
    elif kind.endswith("rgb"):
        rgb = np.stack([smooth, smooth * 0.8, smooth * 0.5], axis=-1).astype("uint8")
        Image.fromarray(rgb).save(path, **({"quality": 90} if kind.startswith("jpeg") else {}))
    else:
        Image.fromarray(smooth.astype("uint8")).save(path, **({"quality": 90} if kind == "jpeg" else {}))
    for size in (64, 48, 128):  # down by non-integer factors, and up
        ours = load_image(path, size, channels=1)
        if kind.startswith("jpeg"):  # the training pipeline reads PNGs; TensorFlow's JPEG decode for JPEGs
            image = tf.image.resize(tf.io.decode_image(tf.io.read_file(str(path)), channels=1), (size, size),
                                    method="area", antialias=True)
            theirs = image.numpy()
        else:
            theirs = decode_and_resize(str(path), size).numpy()
        assert ours.shape == theirs.shape == (size, size, 1)
        # Decoders may round a colour conversion or a JPEG IDCT one level apart; the resize adds float noise.
        assert np.abs(ours - theirs).max() <= 1.0 + 1e-3, (kind, size, np.abs(ours - theirs).max())
        if kind in ("png8", "png16"):  # the same decoded integers: only the resizes' float arithmetic differs
            assert np.abs(ours - theirs).max() <= 1e-3, (kind, size)
