"""Saving and loading `.keras` files: atomic writes, `safe_mode=True`, no legacy `.h5`."""

import os
import re

import keras

from keras_mamsf.utils.atomic import atomic_path
from keras_mamsf.utils.layers import walk_layers

# "normalization_1/mean" -> "normalization/mean": the suffix Keras adds to a repeated auto-name.
_SESSION_SUFFIX = re.compile(r"_\d+(?=/)")


def save_model(model, path):
    """Save `model` to a `.keras` file atomically (a crash never leaves a half file)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: models are saved as .keras files; use a name ending in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_model(path, compile=True):
    """Load a `.keras` model with `safe_mode=True` (no arbitrary code in the file runs)."""
    path = os.fspath(path)
    if path.endswith((".h5", ".hdf5")):
        raise ValueError(
            f"{path}: legacy HDF5 model files are refused (they can carry code); "
            "re-save the model as .keras with Keras 3"
        )
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def copy_weights(source, target):
    """Copy every weight of `source` into the weight of `target` with the same path.

    For two builds of one architecture (e.g. the float32 rebuild of a mixed-precision
    model). Paths are compared without Keras' per-session name suffixes (a second build
    of EfficientNet names its normalization layer "normalization_1"); a path missing on
    either side, or a shape that differs, is an error naming it, so nothing is copied
    into the wrong place.
    """
    import numpy as np

    def by_path(model):
        weights = {}
        for weight in model.weights:
            key = _SESSION_SUFFIX.sub("", weight.path)
            if key in weights:
                raise ValueError(f"{model.name}: two weights share the path {key}; cannot match weights by path")
            weights[key] = weight
        return weights

    sources, targets = by_path(source), by_path(target)
    if sources.keys() != targets.keys():
        only_source = sorted(sources.keys() - targets.keys())
        only_target = sorted(targets.keys() - sources.keys())
        raise ValueError(
            f"{source.name} -> {target.name}: weights do not match by path "
            f"(only in the source: {only_source[:3]}, only in the target: {only_target[:3]})"
        )
    for key, weight in targets.items():
        value = keras.ops.convert_to_numpy(sources[key].value)
        if tuple(value.shape) != tuple(weight.shape):
            raise ValueError(f"{key}: shape {tuple(value.shape)} in {source.name}, {tuple(weight.shape)} in {target.name}")
        weight.assign(np.asarray(value, dtype=weight.dtype) if "float" in str(weight.dtype) else value)
    # A Normalization layer computes from copies of its variables made when it was built or loaded
    # (`finalize_state`): without this, an adapted or ImageNet-normalized backbone would run on in
    # the target with mean 0 and variance 1.
    for layer in walk_layers(target):
        if hasattr(layer, "finalize_state") and layer.weights:
            layer.finalize_state()
