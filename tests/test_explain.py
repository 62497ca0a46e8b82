"""Grad-CAM: the closed form equals autodiff Grad-CAM; a trained model looks where the finding is."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mamsf.explain.grad_cam import class_index, grad_cam, overlay

from conftest import tiny_model
from harness import assert_close


def autodiff_grad_cam(model, images, column):
    """Grad-CAM as Selvaraju et al. write it: gradients by autodiff, then the same resize."""
    features_and_logits = keras.Model(model.inputs[0], [model.get_layer("fusion").output,
                                                     model.get_layer("logits").output])
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        features, logits = features_and_logits(images, training=False)
        target = logits[:, column]
    gradients = tape.gradient(target, features).numpy()
    alpha = gradients.mean(axis=(1, 2))
    maps = np.maximum(np.einsum("nhwk,nk->nhw", features.numpy(), alpha), 0)
    resized = tf.image.resize(maps[..., None], images.shape[1:3], method="bilinear").numpy()[..., 0]
    peak = resized.reshape(len(resized), -1).max(axis=1)
    return resized / np.where(peak > 0, peak, 1)[:, None, None]


@pytest.mark.parametrize("anchor", ["branch", "shadow"])
def test_closed_form_equals_autodiff_grad_cam(anchor):
    model = tiny_model(anchor, input_shape=(64, 64, 1))
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 64, 64, 1)).astype("float32")
    ours = grad_cam(model, images, 1)
    assert ours.shape == (3, 64, 64) and ours.min() >= 0 and ours.max() <= 1
    assert_close(ours, autodiff_grad_cam(model, images, 1), atol=1e-4)  # closed form vs autodiff
    assert grad_cam(model, images[0], 1).shape == (64, 64)


def test_labels_and_overlay():
    assert class_index("Effusion", 14) == 2 and class_index(3, 14) == 3
    with pytest.raises(ValueError, match="unknown label 'Efusion': use one of Atelectasis"):
        class_index("Efusion", 14)
    with pytest.raises(ValueError, match="class index 5 out of range for 3 classes"):
        class_index(5, 3)
    image = np.linspace(0, 255, 16 * 16, dtype="float32").reshape(16, 16, 1)
    heat = np.zeros((16, 16), "float32")
    heat[0, 0] = 1.0
    rgb = overlay(image, heat)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[5, 5] == rgb[5, 5, 0])  # no heat: gray
    assert rgb[0, 0, 2] != rgb[0, 0, 0]  # heat: coloured


def _spot_images(rng, n, size):
    """Noise; class 0 = a bright spot somewhere in the top-left quadrant, class 1 = one in the bottom-right."""
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.normal(80, 20, size=(n, size, size)).clip(0, 255)
    labels = (rng.random((n, 2)) < 0.45).astype("float32")
    half = size // 2
    for i in range(n):
        for column, (low, high) in enumerate(((0, half), (half, size))):
            if labels[i, column]:
                cy, cx = rng.uniform(low + 6, high - 6, size=2)
                images[i] += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
    return images.clip(0, 255)[..., None].astype("float32"), labels


@pytest.mark.slow
def test_heatmap_peaks_where_the_finding_is_drawn():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    size = 64
    x, y = _spot_images(rng, 384, size)
    model = tiny_model("branch", input_shape=(size, size, 1), num_classes=2, fusion_filters=16)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    x_test, y_test = _spot_images(np.random.default_rng(1), 96, size)
    only_first = (y_test[:, 0] == 1) & (y_test[:, 1] == 0)
    heatmaps = grad_cam(model, x_test[only_first], 0)
    peaks = [np.unravel_index(np.argmax(h), h.shape) for h in heatmaps]
    inside = np.mean([(r < size // 2) and (c < size // 2) for r, c in peaks])
    print(f"Grad-CAM peak inside the drawn region (top-left quadrant) for {inside:.0%} of {len(peaks)} images")
    assert inside >= 0.8


def test_predict_writes_grad_cam_overlays(tmp_path, capsys):
    from PIL import Image

    from keras_mamsf.cli.main import main
    from keras_mamsf.labels import CHESTXRAY14_LABELS
    from keras_mamsf.models.io import save_model

    model = tiny_model("branch", input_shape=(32, 32, 1), num_classes=14)
    path = save_model(model, str(tmp_path / "model.keras"))
    image = tmp_path / "x ray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(image)
    assert main(["predict", "--model", path, str(image), "--gradcam", "Hernia", "--out", str(tmp_path / "cams")]) == 0
    assert "Grad-CAM (Hernia): 1 PNG(s)" in capsys.readouterr().out
    written = Image.open(tmp_path / "cams" / "x ray_Hernia.png")
    assert written.size == (32 + 2 + 4, 32) and written.mode == "RGB"  # the image, a gap, the colour scale
    pixels = np.asarray(written)
    assert pixels[0, -2, 0] > 100 and pixels[0, -2, 2] < 100  # the scale's top is red (the peak) ...
    assert pixels[-1, -2, 2] > 100 and pixels[-1, -2, 0] < 100  # ... and its bottom blue (0)
    assert main(["predict", "--model", path, str(image), "--gradcam", "all", "--out", str(tmp_path / "all"),
                 "--json"]) == 0
    expected = sorted(f"x ray_{label}.png" for label in CHESTXRAY14_LABELS)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == expected
    capsys.readouterr()
    assert main(["predict", "--model", path, str(image), "--gradcam", "Herna", "--out", str(tmp_path / "c")]) == 1
    assert "unknown label 'Herna'" in capsys.readouterr().err
    assert main(["predict", "--model", path, str(image), "--gradcam", "all"]) == 1
    assert "--gradcam writes PNGs: add --out DIR" in capsys.readouterr().err
