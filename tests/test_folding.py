"""The grayscale fold of the export graph: exact where it applies, refused (with the reason) where not."""

import keras
import numpy as np

from keras_mamsf.export.folding import fold_grayscale_stem
from keras_mamsf.inference.graph import inference_model
from keras_mamsf.layers.grayscale_to_rgb import GrayscaleToRGB
from keras_mamsf.utils.layers import walk_layers

from conftest import set_normalization_statistics, tiny_model

SIZE = 40  # even: the EfficientNet stem pads bottom/right only, so the border case is the asymmetric one


def _trained_looking(model, seed=0):
    """Small random BatchNorm variances (signals amplified, not damped, layer by layer) and random
    affine terms, so that outputs vary from image to image, as a trained model's do (at init they
    are nearly constant)."""
    rng = np.random.default_rng(seed)
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, channels).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.01, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.3, 0.6, channels).astype("float32"))
    return model


def _normalization(model):
    return next(layer for layer in walk_layers(model) if isinstance(layer, keras.layers.Normalization))


def _images(count=4, seed=1):
    # Images of different brightness (so that the pooled features differ), with bright borders: a
    # wrong treatment of the zero padding shows in the border outputs.
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (count, SIZE, SIZE, 1)) * np.linspace(40, 255, count)[:, None, None, None]
    images[:, -3:, :, :] = 255.0
    images[:, :, -3:, :] = 255.0
    return images.astype("float32")


def _logits_difference(reference, graph):
    """The largest difference of the logits, relative to their largest magnitude."""
    images = _images()
    expected = reference.predict(images, verbose=0)["logits"]
    got = graph.predict(images, verbose=0)["logits"]
    assert expected.std(axis=0).min() > 1e-2  # outputs that vary: the comparison means something
    return float(np.abs(expected - got).max() / np.abs(expected).max())


def test_fold_of_a_from_scratch_grayscale_model_is_exact_and_drops_the_tiling():
    keras.utils.set_random_seed(0)
    reference = inference_model(_trained_looking(tiny_model(input_shape=(SIZE, SIZE, 1), num_classes=14)))
    graph, note = fold_grayscale_stem(reference)
    assert note.startswith("folded") and "stem_conv" in note
    assert graph is not reference and graph.inputs[0].name == "image" and list(graph.output) == ["probs", "logits"]
    assert not [layer for layer in walk_layers(graph) if isinstance(layer, GrayscaleToRGB)]
    stems = [layer for layer in walk_layers(graph) if layer.name == "stem_conv"]
    assert [tuple(stem.kernel.shape) for stem in stems] == [(3, 3, 1, stems[0].filters)]
    assert not [layer for layer in walk_layers(graph) if isinstance(layer, keras.layers.Rescaling)]
    assert _logits_difference(reference, graph) <= 1e-4  # float32 rounding


def test_fold_keeps_a_shared_input_offset_as_a_shift():
    """Equal per-channel statistics (a Normalization adapted on tiled grayscale images): the offset
    is the same for every channel and folds into one scalar shift before the zero padding."""
    keras.utils.set_random_seed(1)
    model = _trained_looking(tiny_model(input_shape=(SIZE, SIZE, 1), num_classes=14), seed=1)
    set_normalization_statistics(_normalization(model), [0.45] * 3, [0.06] * 3)
    reference = inference_model(model)
    # The float32 rebuild of the export keeps the statistics (it used to run with mean 0, variance 1).
    images = _images()
    trained_logits = keras.Model(model.inputs, model.get_layer("logits").output).predict(images, verbose=0)
    assert np.abs(reference.predict(images, verbose=0)["logits"] - trained_logits).max() <= 1e-4
    graph, note = fold_grayscale_stem(reference)
    assert note.startswith("folded")
    shifts = [layer for layer in walk_layers(graph) if layer.name == "input_shift"]
    assert len(shifts) == 1 and np.isclose(float(shifts[0].offset), -0.45 * 255, rtol=1e-5)
    assert _logits_difference(reference, graph) <= 1e-4  # float32 rounding


def test_per_channel_statistics_and_rgb_models_are_left_as_they_are():
    keras.utils.set_random_seed(2)
    model = tiny_model(input_shape=(SIZE, SIZE, 1), num_classes=14)
    imagenet_variance = [0.229**2, 0.224**2, 0.225**2]
    set_normalization_statistics(_normalization(model), [0.485, 0.456, 0.406], imagenet_variance)
    reference = inference_model(model)
    graph, note = fold_grayscale_stem(reference)
    assert graph is reference and note.startswith("not folded") and "differs by channel" in note
    rgb = inference_model(tiny_model(input_shape=(SIZE, SIZE, 3), num_classes=14))
    graph, note = fold_grayscale_stem(rgb)
    assert graph is rgb and note == "not folded: the model takes RGB input"
