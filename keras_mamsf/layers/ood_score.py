"""`OODScore`: how unlike the training images an input image is, computed inside the graph.

The score is the squared Mahalanobis distance of a few input-space statistics of the image from their mean over
training images, under a shrinkage covariance (Ledoit and Wolf 2004; the distance as an out-of-distribution
detector: Lee et al., NeurIPS 2018). The statistics are the image's own, not the classifier's features: on a
model trained for minutes on CPU the pooled features put CT slices and blank images *closer* to the
training images than real X-rays (measured; docs/safety.md), while the layout,
contrast and texture of a chest film separate them. They are (`image_statistics`):

- an `grid` x `grid` thumbnail of the grey image (0..1) and of its square (the layout: lungs, mediastinum,
  shoulders, diaphragm; an upside-down or rotated film moves them);
- a `gradient_grid` x `gradient_grid` grid of the mean absolute horizontal and vertical differences between
  neighbouring pixels, each clipped at 6/64 (texture: noise has far too much, a blank image none);
- the reciprocal square roots of the global variance and of the global mean absolute differences (contrast:
  a constant image, whatever its grey level, is far out on these).

With a model whose features mean something (an ImageNet start), a second Gaussian on the backbone's pooled
features (Lee et al.; FRODO) tells a chest film from a photograph, a fundus image or a document, which the
input statistics alone can miss (`feature_mean`, `feature_whitening`). The layer then returns the larger of
the two squared distances, each divided by its own (1 - alpha) quantile on validation images
(`input_scale`, `feature_scale`): either part alone can refuse an image, and one threshold applies.

Every op has a TFLite int8 kernel, an Edge TPU mapping (Coral's table has no ABS, LOG or SQRT: |d| is
max(d, -d), and roots are RSQRT) and an ONNX equivalent, so the device runs the guard with the model.
"""

import keras
import numpy as np

# Each whitened component is bounded smoothly to +-COMPONENT_BOUND (tanh) before it is squared: in int8 the
# squares share one scale, and a few heavy-tailed components would otherwise make the steps of all the
# others coarser than their values (measured: Spearman 0.76 against the float score; docs/safety.md).
COMPONENT_BOUND = 3.0
DIFFERENCE_GAIN = 64.0  # differences are clipped at 6 / 64 (relu6)
# Floors under the reciprocal roots: a constant image gets 1 / sqrt(1e-4) = 100 on the variance, where
# radiographs give about 3 to 7.
VARIANCE_FLOOR = 1e-4
GRADIENT_FLOOR = 1e-3


def statistics_size(grid=8, gradient_grid=4):
    """The number of statistics `image_statistics` returns per image."""
    return 2 * grid * grid + 2 * gradient_grid * gradient_grid + 3


def image_statistics(images, grid=8, gradient_grid=4):
    """(batch, statistics_size) float32 statistics of NHWC images with pixel values 0..255 (any channels:
    their mean is the grey image). Sizes not divisible by the grids drop the remainder rows/columns."""
    return keras.ops.concatenate(statistic_groups(images, grid, gradient_grid), axis=-1)


def statistic_groups(images, grid=8, gradient_grid=4):
    """`image_statistics` as its five groups (thumbnail, thumbnail of the square, horizontal and vertical
    differences, contrast). The layer whitens each group with its own rows of the whitening matrix and adds
    the results, never concatenating them: an int8 CONCATENATION gives every input one scale, and the
    thumbnails (0..1) would share the contrast's (0..100) coarse steps."""
    ops = keras.ops
    images = ops.cast(images, "float32")
    channels = int(images.shape[-1])
    # The channel mean as sums of slices: an Edge TPU MEAN reduces over x/y only.
    grey = images[..., :1]
    for channel in range(1, channels):
        grey = grey + images[..., channel : channel + 1]
    grey = grey * (1.0 / (255.0 * channels))
    height, width = int(grey.shape[1]), int(grey.shape[2])
    differences = _clipped_differences(grey)  # (batch, H - 1, W - 1, 4)

    def pooled(values, cells, rows, columns):  # the remainder rows / columns cropped: exactly cells x cells
        if rows < cells or columns < cells:
            raise ValueError(f"OODScore: images of {height}x{width} px are smaller than the {cells}x{cells} grid")
        size = (rows // cells, columns // cells)
        values = values[:, : size[0] * cells, : size[1] * cells, :]
        return ops.average_pool(values, pool_size=size, strides=size, padding="valid")

    def image_mean(values):  # over x/y (an Edge TPU MEAN)
        return ops.mean(values, axis=(1, 2))

    cells = pooled(differences, gradient_grid, height - 1, width - 1)
    dx = ops.reshape(cells[..., 0] + cells[..., 1], (-1, gradient_grid * gradient_grid))
    dy = ops.reshape(cells[..., 2] + cells[..., 3], (-1, gradient_grid * gradient_grid))
    total = image_mean(differences)
    mean = image_mean(grey)
    variance = ops.maximum(image_mean(grey * grey) - mean * mean, 0.0)
    contrast = ops.concatenate([ops.rsqrt(variance + VARIANCE_FLOOR),
                                ops.rsqrt(total[:, 0:1] + total[:, 1:2] + GRADIENT_FLOOR),
                                ops.rsqrt(total[:, 2:3] + total[:, 3:4] + GRADIENT_FLOOR)], axis=-1)
    return [ops.reshape(pooled(grey, grid, height, width), (-1, grid * grid)),
            ops.reshape(pooled(grey * grey, grid, height, width), (-1, grid * grid)), dx, dy, contrast]


def _clipped_differences(grey):
    """The positive and negative parts of the horizontal and vertical neighbour differences, each clipped at
    6 / DIFFERENCE_GAIN: one 2x2 convolution with a fused RELU6, so that in int8 the output's scale is that of
    the clipped range (steps of 1/2720, finer than the input's 1/255), not of the rare edges up to 1, which
    would round most of a radiograph's differences to 0. ABS is not an Edge TPU op either."""
    kernel = np.zeros((2, 2, 1, 4), "float32")
    kernel[0, 1, 0, 0], kernel[0, 0, 0, 0] = 1.0, -1.0  # right - left
    kernel[0, 0, 0, 1], kernel[0, 1, 0, 1] = 1.0, -1.0  # left - right
    kernel[1, 0, 0, 2], kernel[0, 0, 0, 2] = 1.0, -1.0  # below - above
    kernel[0, 0, 0, 3], kernel[1, 0, 0, 3] = 1.0, -1.0  # above - below
    responses = keras.ops.conv(grey, kernel * DIFFERENCE_GAIN, strides=1, padding="valid")
    return keras.ops.relu6(responses) * (1.0 / DIFFERENCE_GAIN)


@keras.saving.register_keras_serializable(package="keras_mamsf")
class OODScore(keras.layers.Layer):
    """Squared Mahalanobis distance of `image_statistics(images)` from a fitted Gaussian:
    `|| (s - mean) @ whitening ||^2`,
    where `whitening @ whitening.T` is the inverse of the shrunk covariance. Larger is less typical.
    With a feature Gaussian, called on `[images, features]` (features: the backbone's (batch, h, w, c) map):
    `max(input_scale * d_input, feature_scale * d_features)`, `d_features` the same distance of the
    features' spatial mean.

    Args:
        mean: (d,) mean statistics of the training images.
        whitening: (d, d) lower Cholesky factor of the precision matrix.
        grid, gradient_grid: the statistics' grids (`image_statistics`).
        feature_mean, feature_whitening: (c,) and (c, c): the feature Gaussian, or None (input statistics only).
        input_scale, feature_scale: what each distance is multiplied by before the larger is taken (1 / its
            validation quantile); `input_scale` alone scales the input-only score.

    Example:
        guard = keras_mamsf.guard.fit_guard(train_images, val_images)
        score = OODScore(**guard.layer_arguments())(images)   # (batch,)
    """

    def __init__(self, mean, whitening, grid=8, gradient_grid=4, feature_mean=None, feature_whitening=None,
                 input_scale=1.0, feature_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.input_scale, self.feature_scale = float(input_scale), float(feature_scale)
        self.has_features = feature_mean is not None and len(feature_mean) > 0
        if self.has_features:
            feature_mean = np.asarray(feature_mean, dtype="float32")
            feature_whitening = np.asarray(feature_whitening, dtype="float32")
            channels = feature_mean.shape[0]
            if feature_whitening.shape != (channels, channels):
                raise ValueError(f"OODScore: feature_mean {feature_mean.shape} / feature_whitening "
                                 f"{feature_whitening.shape} do not fit")
            self.feature_mean = self.add_weight(shape=(channels,), initializer=keras.initializers.Constant(
                feature_mean), trainable=False, name="feature_mean")
            self.feature_whitening = self.add_weight(shape=(channels, channels), initializer=keras.initializers.
                                                     Constant(feature_whitening), trainable=False,
                                                     name="feature_whitening")
        self.grid, self.gradient_grid = int(grid), int(gradient_grid)
        size = statistics_size(self.grid, self.gradient_grid)
        mean = np.asarray(mean, dtype="float32")
        whitening = np.asarray(whitening, dtype="float32")
        if mean.shape != (size,) or whitening.shape != (size, size):
            raise ValueError(f"OODScore: mean {mean.shape} / whitening {whitening.shape} do not fit {size} "
                             f"statistics (grid {self.grid}, gradient_grid {self.gradient_grid})")
        self.mean = self.add_weight(shape=(size,), initializer=keras.initializers.Constant(mean), trainable=False,
                                    name="mean")
        self.whitening = self.add_weight(shape=(size, size), initializer=keras.initializers.Constant(whitening),
                                         trainable=False, name="whitening")

    def call(self, inputs):
        images, features = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        if self.has_features != (features is not None):
            raise ValueError("OODScore: call it on [images, features] when it has a feature Gaussian, on images "
                             "alone otherwise")
        whitened, start = 0.0, 0
        for group in statistic_groups(images, self.grid, self.gradient_grid):
            stop = start + int(group.shape[-1])
            whitened = whitened + keras.ops.matmul(group - self.mean[start:stop], self.whitening[start:stop])
            start = stop
        score = bounded_square_sum(whitened)
        if self.input_scale != 1.0:
            score = score * self.input_scale
        if features is None:
            return score
        pooled = keras.ops.mean(keras.ops.cast(features, "float32"), axis=(1, 2))
        feature_score = bounded_square_sum(keras.ops.matmul(pooled - self.feature_mean, self.feature_whitening))
        return keras.ops.maximum(score, feature_score * self.feature_scale)

    def compute_output_shape(self, input_shape):
        first = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape
        return (first[0],)

    def get_config(self):
        config = dict(super().get_config(), mean=keras.ops.convert_to_numpy(self.mean).tolist(),
                      whitening=keras.ops.convert_to_numpy(self.whitening).tolist(),
                      grid=self.grid, gradient_grid=self.gradient_grid, input_scale=self.input_scale,
                      feature_scale=self.feature_scale)
        if self.has_features:
            config.update(feature_mean=keras.ops.convert_to_numpy(self.feature_mean).tolist(),
                          feature_whitening=keras.ops.convert_to_numpy(self.feature_whitening).tolist())
        return config


def bounded_square_sum(whitened):
    """The sum of squares of the whitened components, each bounded smoothly to +-COMPONENT_BOUND."""
    bounded = keras.ops.tanh(whitened * (1.0 / COMPONENT_BOUND)) * COMPONENT_BOUND
    return keras.ops.sum(bounded * bounded, axis=-1)
