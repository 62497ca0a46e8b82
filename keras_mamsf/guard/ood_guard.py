"""`OODGuard`: the out-of-distribution guard's fitted numbers, and how they are fitted and stored.

    guard = fit_guard(train_images, val_images, model=model, source="data/ChestX-ray14 train/val")
    guard.save("runs/a/ood_guard.npz")
    scores = guard.score(images, model)           # (N,) `layers.OODScore`, as every export computes it
    guard.in_distribution(scores)                 # score <= threshold

Two Gaussians, their covariances shrunk with Ledoit-Wolf (scikit-learn) because a few thousand images estimate
hundreds of entries poorly: one on `layers.ood_score.image_statistics` (layout, contrast, texture of the
pixels), one on the backbone's pooled features (`feature_tensor`: what the network sees; Lee et al. 2018).
The score is the larger of the two squared Mahalanobis distances, each divided by its own (1 - alpha)
quantile on the threshold images; the threshold is that score's (1 - alpha) quantile. The pixels catch a
blank, a noise image, an inverted or rotated film; the features catch a photograph, a fundus image, a
document, a CT slice whose pixel statistics happen to look like a film's (measured: docs/safety.md).

Both Gaussians are fitted on the training images and on a copy of them with one ordinary difference each
(`variations.ORDINARY`: JPEG, noise, gamma, brightness, contrast, crop, resolution), and the thresholds are
set on validation images and such a copy: fitted on one archive's films alone, the feature distance flags
most of the same films saved as JPEG quality 30. The thresholds are quantiles of *other* images than those
the Gaussians were fitted on: on its own fitting images a Mahalanobis distance is optimistic.

Pitfalls: the guard judges the image, not the findings: it flags what does not look like the training films,
not a disease the model has not seen. Fit it on the images the model was trained on, at the model's input
size, with the model whose features it will read: a guard with a feature part belongs to that model's
weights. Without a model it is the pixel part alone. With a model trained for minutes from random weights the
feature part is fitted all the same but adds little, and in int8 its ranking is noisy (the demo's 64-px model:
Spearman 0.51 against float, verdicts agree on 97.7%); its worth comes with a pretrained start.
"""

import dataclasses
import os

import numpy as np

from keras_mamsf.utils.atomic import atomic_path

ALPHA = 0.01
FIT_IMAGES = 2000
GUARD_NAME = "ood_guard.npz"
FORMAT = "keras-mamsf/ood-guard/2"
READABLE_FORMATS = ("keras-mamsf/ood-guard/1", FORMAT)  # /1: the input statistics alone
FEATURE_LAYER = "momentum_anchor"  # the features are this layer's input: the backbone trunk's output


@dataclasses.dataclass
class OODGuard:
    """The fitted guard.

    Attributes:
        mean, whitening: the input statistics' Gaussian (`layers.OODScore`'s arguments).
        threshold: scores above it are out of distribution.
        feature_mean, feature_whitening: the backbone features' Gaussian ((0,) and (0, 0): none).
        input_scale, feature_scale: 1 / each distance's (1 - alpha) quantile on the threshold images (1.0 for a
            guard without features: its score is the input distance itself).
        features: where the features come from (one line; "" without).
        variations: the ordinary differences the Gaussians and thresholds also saw ("" for none).
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
    feature_mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, "float32"))
    feature_whitening: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), "float32"))
    input_scale: float = 1.0
    feature_scale: float = 1.0
    features: str = ""
    variations: str = ""

    @property
    def has_features(self):
        return len(self.feature_mean) > 0

    def layer_arguments(self):
        arguments = {"mean": self.mean, "whitening": self.whitening, "grid": self.grid,
                     "gradient_grid": self.gradient_grid, "input_scale": self.input_scale}
        if self.has_features:
            arguments.update(feature_mean=self.feature_mean, feature_whitening=self.feature_whitening,
                             feature_scale=self.feature_scale)
        return arguments

    def layer(self, **kwargs):
        from keras_mamsf.layers.ood_score import OODScore

        return OODScore(**self.layer_arguments(), **kwargs)

    def score(self, images, model=None, batch_size=256):
        """(N,) float64 scores of NHWC images 0..255, computed as the exported graphs compute them; a guard with
        a feature part reads `model`'s features (the model it was fitted with)."""
        layer = self.layer()
        if not self.has_features:
            return _in_batches(lambda batch: np.asarray(layer(batch), dtype="float64"), images, batch_size)
        if model is None:
            raise ValueError("this OOD guard reads the model's features: pass the model it was fitted with")
        extract = feature_model(model)
        return _in_batches(lambda batch: np.asarray(layer([batch, extract(batch, training=False)]),
                                                    dtype="float64"), images, batch_size)

    def in_distribution(self, scores):
        return np.asarray(scores) <= self.threshold

    def record(self):
        """The manifest's and metrics.json's description (no arrays)."""
        pixels = ("squared Mahalanobis distance of input-space statistics (grey thumbnail and its square on a "
                  f"{self.grid}x{self.grid} grid, mean absolute differences on a {self.gradient_grid}x"
                  f"{self.gradient_grid} grid, reciprocal roots of the global contrast; each whitened component "
                  "bounded by 3 tanh(z / 3)) under a Ledoit-Wolf shrunk covariance")
        method = pixels if not self.has_features else (
            f"the larger of two scores, each divided by its own {1 - self.alpha:g} quantile on the threshold images: "
            f"the {pixels}, and the same distance of the backbone's spatially pooled features ({self.features})")
        record = {"output": "ood_score", "threshold": float(self.threshold), "alpha": self.alpha,
                  "rule": "in distribution when ood_score <= threshold", "method": method,
                  "statistics": int(len(self.mean)), "image_size": self.image_size, "fit_images": self.fit_images,
                  "threshold_images": self.threshold_images, "shrinkage": self.shrinkage, "source": self.source,
                  "features": int(len(self.feature_mean)), "ordinary_variations": self.variations}
        return record

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
                if str(data.get("format", "")) not in READABLE_FORMATS:
                    raise ValueError("not an OOD guard file")
                values = {field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data}
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a readable OOD guard ({str(error).splitlines()[0]}); fit it again with "
                             "`mamsf export --calibration-data ROOT`") from None
        arrays = ("mean", "whitening", "feature_mean", "feature_whitening")
        scalars = {name: value.item() for name, value in values.items() if name not in arrays}
        return cls(**{name: values[name].astype("float32") for name in arrays if name in values}, **scalars)


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


def feature_tensor(model):
    """The symbolic tensor the feature Gaussian reads: the backbone trunk's output, which is the input of the
    model's `momentum_anchor` layer (every `MAMSFClassifier` has one, whatever its anchor mode); None for a
    hand-assembled model without it."""
    if FEATURE_LAYER not in [layer.name for layer in model.layers]:
        return None
    return model.get_layer(FEATURE_LAYER).input


def feature_model(model):
    """`image -> the backbone trunk's feature map`, sharing `model`'s layers."""
    import keras

    tensor = feature_tensor(model)
    if tensor is None:
        raise ValueError(f"{model.name}: no '{FEATURE_LAYER}' layer, so no backbone features for the OOD guard")
    return keras.Model(model.inputs[0], tensor, name=f"{model.name}_guard_features")


def _gaussian(values):
    """(mean, lower Cholesky factor of the precision, shrinkage) of a Ledoit-Wolf fit to `values`."""
    from sklearn.covariance import LedoitWolf

    estimate = LedoitWolf().fit(values)
    # precision = L L^T, so (v - mean)^T precision (v - mean) = |(v - mean) @ L|^2
    whitening = np.linalg.cholesky(estimate.precision_)
    return estimate.location_.astype("float32"), whitening.astype("float32"), float(estimate.shrinkage_)


def fit_guard(fit_images, threshold_images, alpha=ALPHA, grid=8, gradient_grid=4, source="", model=None,
              variations=True, seed=0):
    """Fits the guard on `fit_images` and sets its threshold at the (1 - `alpha`) quantile of
    `threshold_images`' scores (both NHWC 0..255, the model's input size).

    Args:
        model: the classifier whose backbone features the second Gaussian reads (`feature_tensor`); None: the
            input statistics alone.
        variations: also fit on, and set the thresholds with, a copy of each set with one ordinary difference
            per image (`variations.ordinary_variations`, drawn with `seed`).
    """
    import keras

    from keras_mamsf.guard.variations import ORDINARY, ordinary_variations
    from keras_mamsf.layers.ood_score import image_statistics

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"the guard's alpha must be in (0, 1), got {alpha}")
    if len(fit_images) < 2 or len(threshold_images) < 1:
        raise ValueError(f"the OOD guard needs training images to fit and validation images to set its threshold; "
                         f"got {len(fit_images)} and {len(threshold_images)}")
    fit_images = np.asarray(fit_images, dtype="float32")
    threshold_images = np.asarray(threshold_images, dtype="float32")
    counts = (len(fit_images), len(threshold_images))
    if variations:
        fit_images = np.concatenate([fit_images, ordinary_variations(fit_images, seed=seed)])
        threshold_images = np.concatenate([threshold_images, ordinary_variations(threshold_images, seed=seed + 1)])
    statistics = _in_batches(lambda batch: keras.ops.convert_to_numpy(image_statistics(batch, grid, gradient_grid))
                             .astype("float64"), fit_images)
    mean, whitening, shrinkage = _gaussian(statistics)
    guard = OODGuard(mean=mean, whitening=whitening, threshold=0.0, alpha=float(alpha), grid=grid,
                     gradient_grid=gradient_grid, image_size=int(fit_images.shape[1]), fit_images=counts[0],
                     threshold_images=counts[1], shrinkage=shrinkage, source=source,
                     variations=ORDINARY if variations else "")
    # The parts of the threshold images' scores, each computed once; the combined score is the layer's rule.
    scores = guard.score(threshold_images)  # the input distances (input_scale is still 1)
    if model is not None and feature_tensor(model) is not None:
        from keras_mamsf.layers.ood_score import bounded_square_sum

        extract = feature_model(model)

        def pooled(images):  # the spatial mean in float32, as the layer takes it
            return _in_batches(lambda batch: keras.ops.convert_to_numpy(
                keras.ops.mean(extract(batch, training=False), axis=(1, 2))), images, 128)

        guard.feature_mean, guard.feature_whitening, _ = _gaussian(pooled(fit_images).astype("float64"))
        feature_distances = keras.ops.convert_to_numpy(bounded_square_sum(keras.ops.matmul(
            pooled(threshold_images) - guard.feature_mean, guard.feature_whitening))).astype("float64")
        guard.input_scale = float(1.0 / np.quantile(scores, 1.0 - alpha))
        guard.feature_scale = float(1.0 / np.quantile(feature_distances, 1.0 - alpha))
        scores = np.maximum(scores * guard.input_scale, feature_distances * guard.feature_scale)
        shape = tuple(int(d) for d in extract.output.shape[1:])
        guard.features = (f"the backbone trunk's output of {model.name} (the input of its {FEATURE_LAYER} layer), "
                          f"{shape[-1]} channels averaged over {shape[0]}x{shape[1]}")
    guard.threshold = float(np.quantile(scores, 1.0 - alpha))
    return guard


def guard_from_source(source, image_size, channels, fit_count=FIT_IMAGES, alpha=ALPHA, seed=0, where="", model=None):
    """Fits a guard on a seeded sample of `source`'s train split (`fit_count` images) and sets its threshold on the
    whole val split (`mamsf train` at the end of a run, `mamsf export` for a model without one), with `model`'s
    features when given (`fit_guard`). A val split of fewer than 50 images (or none) cannot place a 99th
    percentile: a fifth of the train sample is held back for it instead, and the source line says so."""
    from keras_mamsf.data.sources import dataset_arrays

    train = dataset_arrays(source.sample("train", fit_count, image_size, 64, channels=channels, seed=seed))[0]
    try:
        val, held = dataset_arrays(source.dataset("val", image_size, 64, channels=channels))[0], "val images"
    except (KeyError, ValueError):
        val, held = None, None
    if val is None or len(val) < 50:
        cut = len(train) * 4 // 5
        train, val, held = train[:cut], train[cut:], "held-back train images (the val split has fewer than 50)"
    return fit_guard(train, val, alpha=alpha, model=model, seed=seed,
                     source=f"{where}: {len(train)} train images, threshold on {len(val)} {held}")


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
