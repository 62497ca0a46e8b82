"""`copy_weights`: weights from one build of an architecture into another, matched by path.

On the ground floor because the backbones (folding ImageNet's input scaling), the models and the
float32 inference graph all need it.
"""

import re

import keras
import numpy as np

from keras_mamsf.utils.layers import walk_layers

# "normalization_1/mean" -> "normalization/mean": the suffix Keras adds to a repeated auto-name.
_SESSION_SUFFIX = re.compile(r"_\d+(?=/)")


def copy_weights(source, target):
    """Copy every weight of `source` into the weight of `target` with the same path.

    For two builds of one architecture (e.g. the float32 rebuild of a mixed-precision
    model). Paths are compared without Keras' per-session name suffixes (a second build
    of EfficientNet names its normalization layer "normalization_1"); a path missing on
    either side, or a shape that differs, is an error naming it, so nothing is copied
    into the wrong place.
    """
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
            raise ValueError(f"{key}: shape {tuple(value.shape)} in {source.name}, {tuple(weight.shape)} in "
                             f"{target.name}")
        weight.assign(np.asarray(value, dtype=weight.dtype) if "float" in str(weight.dtype) else value)
    # A Normalization layer computes from copies of its variables made when it was built or loaded
    # (`finalize_state`): without this, an adapted or ImageNet-normalized backbone would run on in
    # the target with mean 0 and variance 1.
    for layer in walk_layers(target):
        if hasattr(layer, "finalize_state") and layer.weights:
            layer.finalize_state()
