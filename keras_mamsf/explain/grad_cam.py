"""Grad-CAM on the fusion head's last feature map.

Grad-CAM (Selvaraju et al., 2017) weighs each channel k of a feature map A by the mean gradient
of the class logit y_c over the map's positions, alpha_k = mean_ij dy_c / dA_k(i, j), and keeps
ReLU(sum_k alpha_k A_k). In MAMSF the fusion map feeds global average pooling, (inference-time
identity) dropout and one Dense layer, so dy_c / dA_k(i, j) = W[k, c] / (H * W) at every position:
the gradient is known in closed form, and the map needs one forward pass on any backend (this is
also CAM, Zhou et al., 2016; `tests/test_explain.py` checks it against autodiff). For `"branch"`
the fusion map is computed from both branches' features, so the heatmap covers both.
"""

import numpy as np

FEATURE_LAYER = "fusion"
LOGITS_LAYER = "logits"


def class_index(label, num_classes, labels=None):
    """The column of `label`: an int, or a class name from `labels` (ChestX-ray14's by default)."""
    if labels is None:
        from keras_mamsf.labels import CHESTXRAY14_LABELS

        labels = CHESTXRAY14_LABELS if num_classes == len(CHESTXRAY14_LABELS) else [str(c) for c in range(num_classes)]
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= int(label) < num_classes:
            raise ValueError(f"class index {label} out of range for {num_classes} classes")
        return int(label)
    if str(label) not in labels:
        raise ValueError(f"unknown label {label!r}: use one of {', '.join(labels)}")
    return list(labels).index(str(label))


def grad_cam(model, image, label, labels=None):
    """Grad-CAM heatmap(s) of `model` (a MAMSF `.keras` model) for class `label`.

    Args:
        model: a model built by `build_model` (it has the "fusion" and "logits" layers).
        image: one image (H, W, C) or a batch (N, H, W, C), pixels 0..255 as the model takes them.
        label: a class index or name.
        labels: the class names when they are not ChestX-ray14's.

    Returns:
        float32 heatmaps in [0, 1] at the image's resolution: (H, W), or (N, H, W) for a batch
        (all zeros where no position supports the class).

    Example:
        heatmap = grad_cam(model, image, "Effusion")
        png = overlay(image, heatmap)
    """
    import keras

    image = np.asarray(image, dtype="float32")
    single = image.ndim == 3
    batch = image[None] if single else image
    feature_model = keras.Model(model.inputs[0], model.get_layer(FEATURE_LAYER).output)
    dense = model.get_layer(LOGITS_LAYER)
    column = class_index(label, dense.units, labels)
    features = np.asarray(keras.ops.convert_to_numpy(feature_model(batch, training=False)), dtype="float32")
    kernel = np.asarray(keras.ops.convert_to_numpy(dense.kernel), dtype="float32")
    height, width = features.shape[1:3]
    alpha = kernel[:, column] / (height * width)  # mean gradient of the logit over positions
    maps = np.maximum(np.einsum("nhwk,k->nhw", features, alpha), 0.0)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(maps[..., None], batch.shape[1:3], interpolation="bilinear"))[..., 0]
    peak = resized.reshape(len(resized), -1).max(axis=1)
    heatmaps = np.where(peak[:, None, None] > 0, resized / np.where(peak > 0, peak, 1.0)[:, None, None], 0.0)
    heatmaps = np.clip(heatmaps, 0.0, 1.0).astype("float32")
    return heatmaps[0] if single else heatmaps


def overlay(image, heatmap, alpha=0.45):
    """The X-ray in gray with the heatmap over it ("jet" colours), as RGB uint8 (H, W, 3); `with_colour_scale`
    adds the scale (what `mamsf predict --gradcam` writes)."""
    from matplotlib import colormaps

    image = np.asarray(image, dtype="float32")
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    low, high = float(gray.min()), float(gray.max())
    gray = (gray - low) / (high - low) if high > low else np.zeros_like(gray)
    colour = colormaps["jet"](np.asarray(heatmap, dtype="float32"))[..., :3]
    weight = alpha * np.asarray(heatmap, dtype="float32")[..., None]
    blended = (1 - weight) * gray[..., None] + weight * colour
    return (np.clip(blended, 0, 1) * 255).round().astype("uint8")


def with_colour_scale(rgb):
    """`rgb` (an `overlay`) with its colour scale beside it: a "jet" bar from the heatmap's maximum (top,
    red: where the class's evidence is strongest, 1.0 relative to the image's own peak) to 0 (bottom,
    blue), labelled "1" and "0" when the image is tall enough to read them."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    bar_width, gap = max(4, width // 16), max(2, width // 32)
    label_width = 14 if height >= 64 else 0
    ramp = np.linspace(1.0, 0.0, height, dtype="float32")[:, None].repeat(bar_width, axis=1)
    bar = (colormaps["jet"](ramp)[..., :3] * 255).round().astype("uint8")
    canvas = np.full((height, width + gap + bar_width + label_width, 3), 255, "uint8")
    canvas[:, :width] = rgb
    canvas[:, width + gap:width + gap + bar_width] = bar
    image = Image.fromarray(canvas)
    if label_width:
        draw = ImageDraw.Draw(image)
        draw.text((width + gap + bar_width + 3, 0), "1", fill=(0, 0, 0))
        draw.text((width + gap + bar_width + 3, height - 11), "0", fill=(0, 0, 0))
    return np.asarray(image)


def write_png(path, rgb):
    """An RGB uint8 array as a PNG file, written atomically."""
    import io

    from PIL import Image

    from keras_mamsf.utils import write_bytes_atomic

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
    return path
