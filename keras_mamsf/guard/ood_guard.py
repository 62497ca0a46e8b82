"""`OODGuard`: the out-of-distribution guard's fitted numbers, and how they are fitted and stored.

    guard = fit_guard(train_images, val_images, alpha=0.01, source="data/ChestX-ray14 train/val")
    guard.save("runs/a/ood_guard.npz")
    scores = guard.score(images)                  # (N,) squared Mahalanobis distances (`layers.OODScore`)
    guard.in_distribution(scores)                 # score <= threshold

The density is a Gaussian on `layers.ood_score.image_statistics`, its covariance shrunk with Ledoit-Wolf
(scikit-learn) because a few thousand images estimate 163 x 163 entries poorly. The threshold is the
(1 - alpha) quantile of scores of *other* images (the validation split) than those the Gaussian was fitted
on: on its own fitting images a Mahalanobis distance is optimistic, and the threshold would flag more than
alpha of new in-distribution images. Expect a somewhat higher false-alarm rate on new patients than alpha
(measured on ChestX-ray14: docs/safety.md).

Pitfalls: the guard sees pixels, not findings: it flags what does not look like the training films (a CT
slice, a photo, a blank, inverted, upside-down or rotated image, another hospital's very different
processing), not a disease the model has not seen. Fit it on the images the model was trained on, at the
model's input size.
"""

import dataclasses
import os

import numpy as np

from keras_mamsf.utils.atomic import atomic_path

ALPHA = 0.01
FIT_IMAGES = 2000
GUARD_NAME = "ood_guard.npz"
FORMAT = "keras-mamsf/ood-guard/1"


@dataclasses.dataclass
class OODGuard:
    """The fitted guard.

    Attributes:
        mean, whitening: the Gaussian (`layers.OODScore`'s arguments).
        threshold: scores above it are out of distribution.
        alpha: the share of validation images above the threshold.
        grid, gradient_grid: the statistics' grids.
        image_size: the input size it was fitted at.
        fit_images, threshold_images: how many images fitted the Gaussian and set the threshold.
        shrinkage: Ledoit-Wolf's shrinkage coefficient.
        source: where the images came from (one line).
    """

    mean: np.ndarray
    whitening: np.ndarray
    threshold: float
    alpha: float = ALPHA
    grid: int = 8
    gradient_grid: int = 4
    image_size: int = 0
    fit_images: int = 0
    threshold_images: int = 0
    shrinkage: float = 0.0
    source: str = ""

    def layer_arguments(self):
        return {"mean": self.mean, "whitening": self.whitening, "grid": self.grid,
                "gradient_grid": self.gradient_grid}

    def layer(self, **kwargs):
        from keras_mamsf.layers.ood_score import OODScore

        return OODScore(**self.layer_arguments(), **kwargs)

    def score(self, images, batch_size=256):
        """(N,) float64 scores (squared Mahalanobis distances) of NHWC images 0..255, computed as the exported
        graphs compute them."""
        layer = self.layer()
        return _in_batches(lambda batch: np.asarray(layer(batch), dtype="float64"), images, batch_size)

    def in_distribution(self, scores):
        return np.asarray(scores) <= self.threshold

    def record(self):
        """The manifest's and metrics.json's description (no arrays)."""
        return {"output": "ood_score", "threshold": float(self.threshold), "alpha": self.alpha,
                "rule": "in distribution when ood_score <= threshold",
                "method": "squared Mahalanobis distance of input-space statistics (grey thumbnail and its square on a "
                          f"{self.grid}x{self.grid} grid, mean absolute differences on a {self.gradient_grid}x"
                          f"{self.gradient_grid} grid, reciprocal roots of the global contrast; each whitened "
                          "component bounded by 3 tanh(z / 3)) under a Ledoit-Wolf shrunk covariance",
                "statistics": int(len(self.mean)), "image_size": self.image_size, "fit_images": self.fit_images,
                "threshold_images": self.threshold_images, "shrinkage": self.shrinkage, "source": self.source}

    def save(self, path):
        fields = dataclasses.asdict(self)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, format=FORMAT, **{k: np.asarray(v) for k, v in fields.items()})
        return path

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data.get("format", "")) != FORMAT:
                    raise ValueError("not an OOD guard file")
                values = {field.name: data[field.name] for field in dataclasses.fields(cls)}
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a readable OOD guard ({str(error).splitlines()[0]}); fit it again with "
                             "`mamsf export --calibration-data ROOT`") from None
        scalars = {name: value.item() for name, value in values.items() if name not in ("mean", "whitening")}
        return cls(mean=values["mean"].astype("float32"), whitening=values["whitening"].astype("float32"),
                   **scalars)


def calibration_anchors(size, channels, seed=0):
    """Five images the guard must flag (black, white, mid-grey, two of uniform noise), float32 NHWC 0..255, for an
    int8 file's calibration set: int8 ranges are those seen in calibration, and without these the guard's tensors
    clip such inputs back into the training images' range (measured: uniform noise then scored as typical)."""
    rng = np.random.default_rng(seed)
    shape = (size, size, channels)
    images = [np.zeros(shape), np.full(shape, 255.0), np.full(shape, 128.0), rng.uniform(0, 255, shape),
              rng.uniform(0, 255, shape)]
    return np.stack(images).astype("float32")


def _in_batches(function, images, batch_size=256):
    """`function` of NHWC images 0..255, concatenated over batches of `batch_size` (bounded memory)."""
    images = np.asarray(images, dtype="float32")
    if len(images) == 0:
        return np.zeros(0)
    return np.concatenate([function(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def fit_guard(fit_images, threshold_images, alpha=ALPHA, grid=8, gradient_grid=4, source=""):
    """Fits the Gaussian on `fit_images` and sets the threshold at the (1 - `alpha`) quantile of
    `threshold_images`' scores (both NHWC 0..255, the model's input size)."""
    import keras
    from sklearn.covariance import LedoitWolf

    from keras_mamsf.layers.ood_score import image_statistics

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"the guard's alpha must be in (0, 1), got {alpha}")
    if len(fit_images) < 2 or len(threshold_images) < 1:
        raise ValueError(f"the OOD guard needs training images to fit and validation images to set its threshold; "
                         f"got {len(fit_images)} and {len(threshold_images)}")
    fit_images = np.asarray(fit_images, dtype="float32")
    statistics = _in_batches(lambda batch: keras.ops.convert_to_numpy(image_statistics(batch, grid, gradient_grid))
                             .astype("float64"), fit_images)
    estimate = LedoitWolf().fit(statistics)
    # precision = L L^T, so (s - mean)^T precision (s - mean) = |(s - mean) @ L|^2
    whitening = np.linalg.cholesky(estimate.precision_)
    guard = OODGuard(mean=estimate.location_.astype("float32"), whitening=whitening.astype("float32"), threshold=0.0,
                     alpha=float(alpha), grid=grid, gradient_grid=gradient_grid,
                     image_size=int(fit_images.shape[1]), fit_images=len(fit_images),
                     threshold_images=len(threshold_images), shrinkage=float(estimate.shrinkage_), source=source)
    guard.threshold = float(np.quantile(guard.score(threshold_images), 1.0 - alpha))
    return guard


def guard_from_source(source, image_size, channels, fit_count=FIT_IMAGES, alpha=ALPHA, seed=0, where=""):
    """Fits a guard on a seeded sample of `source`'s train split (`fit_count` images) and sets its threshold on the
    whole val split (`mamsf train` at the end of a run, `mamsf export` for a model without one). A val split of
    fewer than 50 images (or none) cannot place a 99th percentile: a fifth of the train sample is held back for
    it instead, and the source line says so."""
    from keras_mamsf.data.sources import dataset_arrays

    train = dataset_arrays(source.sample("train", fit_count, image_size, 64, channels=channels, seed=seed))[0]
    try:
        val, held = dataset_arrays(source.dataset("val", image_size, 64, channels=channels))[0], "val images"
    except (KeyError, ValueError):
        val, held = None, None
    if val is None or len(val) < 50:
        cut = len(train) * 4 // 5
        train, val, held = train[:cut], train[cut:], "held-back train images (the val split has fewer than 50)"
    return fit_guard(train, val, alpha=alpha, source=f"{where}: {len(train)} train images, threshold on {len(val)} "
                                                   f"{held}")


def flagged_report(scores, threshold, names=None, listed=20):
    """What `metrics.json` says about the guard on a split: how many images it flags and which (the first
    `listed`)."""
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    flagged = np.flatnonzero(scores > threshold)
    return {"threshold": float(threshold), "images": int(len(scores)), "flagged": int(len(flagged)),
            "share": float(len(flagged) / len(scores)) if len(scores) else None,
            "flagged_images": [str(names[i]) if names is not None else int(i) for i in flagged[:listed]]}


def guard_beside(model_path):
    """The guard a `mamsf train` run wrote beside its model (`ood_guard.npz`), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path).rstrip(os.sep))), GUARD_NAME)
    return OODGuard.load(path) if os.path.isfile(path) else None
