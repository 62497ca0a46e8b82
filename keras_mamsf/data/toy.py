"""A tiny in-memory synthetic dataset for the demo and quick experiments.

SYNTHETIC: blobs on noise, not chest X-rays. Each of the 14 labels is a faint blob at a
label-specific place; label frequencies follow the ChestX-ray14 counts (54% "No
Finding", Hernia about 0.2%), so the tail is as thin as in the real data.
"""

import numpy as np

from keras_mamsf.labels import CHESTXRAY14_LABELS

# Positives per label over the 112,120 ChestX-ray14 images, in CHESTXRAY14_LABELS order.
CHESTXRAY14_COUNTS = (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516, 1686, 3385, 227)
CHESTXRAY14_IMAGES = 112120
CHESTXRAY14_NO_FINDING = 60361


def toy_dataset(images, size=64, seed=0):
    """`(x, y)`: `x` float32 (images, size, size, 1) in 0..255, `y` float32 (images, 14)."""
    if images <= 0 or size < 32:
        raise ValueError(f"toy_dataset needs images > 0 and size >= 32, got images={images}, size={size}")
    rng = np.random.default_rng(seed)
    marginal = np.asarray(CHESTXRAY14_COUNTS) / CHESTXRAY14_IMAGES
    p_finding = 1.0 - CHESTXRAY14_NO_FINDING / CHESTXRAY14_IMAGES
    conditional = np.minimum(marginal / p_finding, 1.0)
    y = np.zeros((images, len(CHESTXRAY14_LABELS)), dtype="float32")
    for row in np.flatnonzero(rng.random(images) < p_finding):
        drawn = rng.random(len(marginal)) < conditional
        if not drawn.any():
            drawn[rng.choice(len(marginal), p=marginal / marginal.sum())] = True
        y[row] = drawn
    grid = np.linspace(0.2, 0.8, 4)
    centers = [(grid[i // 4], grid[i % 4]) for i in range(len(CHESTXRAY14_LABELS))]
    yy, xx = np.mgrid[0:size, 0:size] / size
    x = 90 + 40 * yy[None] + rng.normal(0, 12, size=(images, size, size))
    sigma = 0.06
    for label, (cy, cx) in enumerate(centers):
        rows = np.flatnonzero(y[:, label])
        for row in rows:
            jy, jx = rng.normal(0, 0.02, size=2)
            x[row] += 45 * np.exp(-((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / (2 * sigma**2))
    return np.clip(x, 0, 255).astype("float32")[..., None], y
