"""Every private Keras API keras-mamsf uses, in one place.

Keras does not promise these across minor releases, which is why `setup.cfg` pins
`keras<KERAS_BELOW`. `tests/test_keras_internals.py` exercises each one and fails with
the installed Keras version in its message if a release moves or changes it; move the
upper bound only after that test passes on the new release.
"""

import keras

KERAS_BELOW = "3.16"  # the first minor release these have not been checked against


def efficientnet_builder():
    """`(EfficientNet, DEFAULT_BLOCKS_ARGS)`: the builder behind `keras.applications.EfficientNetB0..B7`.

    Needed for EfficientNet-Lite0 (B0's stages without squeeze-and-excitation, ReLU6);
    `keras.applications` exports only the fixed variants.
    """
    from keras.src.applications import efficientnet

    return efficientnet.EfficientNet, efficientnet.DEFAULT_BLOCKS_ARGS


def efficientnet_imagenet_stddev():
    """The per-channel ImageNet standard deviations behind Keras' EfficientNet B0-B7 ImageNet weights.

    Their weight files store the input `Normalization` variance as these squared, and Keras adds a
    `Rescaling(1 / sqrt(stddev))` after it only when built with `weights="imagenet"`
    (tensorflow/tensorflow#49930); a local copy of the file loaded by path needs the same factor.
    """
    from keras.src.applications import efficientnet

    return tuple(float(value) for value in efficientnet.IMAGENET_STDDEV_RGB)


def jax_state_mapping(model, state):
    """`[(variable, value)]` for the JAX trainer's `state` = (trainable, non-trainable,
    optimizer, metrics) values, in the order of `model.trainable_variables`,
    `model.non_trainable_variables`, `model.optimizer.variables`, `model.metrics_variables`."""
    trainable, non_trainable, optimizer_values, metrics_values = state
    return (
        list(zip(model.trainable_variables, trainable))
        + list(zip(model.non_trainable_variables, non_trainable))
        + list(zip(model.optimizer.variables, optimizer_values))
        + list(zip(model.metrics_variables, metrics_values))
    )


def jax_state_from_scope(model, scope, state):
    """`state` with the model's (trainable and non-trainable) variables read from a
    `keras.StatelessScope` that may have assigned them; optimizer and metrics unchanged."""
    _, _, optimizer_values, metrics_values = state
    return (
        [scope.get_current_value(v) for v in model.trainable_variables],
        [scope.get_current_value(v) for v in model.non_trainable_variables],
        optimizer_values,
        metrics_values,
    )


def keras_version():
    return keras.__version__


def optimizer_variable_index(optimizer, variable):
    """The position of `variable` among the variables `optimizer` was built with (its slot index), for a
    variable as `update_step` receives it (a Keras variable, or the backend's own under TensorFlow)."""
    return optimizer._get_variable_index(variable)


def in_stateless_scope():
    """Whether the code runs inside a `keras.StatelessScope` (where variables read mapped values): how int8
    weight rounding tells the momentum anchor's path through a block from the online one."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope as inside

    return inside()
