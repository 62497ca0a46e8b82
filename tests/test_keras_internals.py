"""The private Keras APIs we use (`keras_mamsf/utils/keras_internals.py`) still behave, and
`keras` is bounded above by the version they were checked on."""

import configparser
import os

import keras
import pytest

from keras_mamsf.utils import keras_internals

from conftest import toy_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def _loudly(check):
    try:
        check()
    except Exception as error:  # noqa: BLE001 - the point is the message
        pytest.fail(f"Keras {keras.__version__} changed a private API keras-mamsf uses "
                    f"(keras_mamsf/utils/keras_internals.py): {type(error).__name__}: {error}")


def test_keras_requirement_has_the_checked_upper_bound():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    requirement = next(line.strip() for line in config["options.extras_require"]["train"].splitlines()
                       if line.strip().startswith("keras"))
    assert requirement.endswith(f",<{keras_internals.KERAS_BELOW}"), requirement
    assert _version(keras.__version__) < _version(keras_internals.KERAS_BELOW), (
        f"Keras {keras.__version__} is installed, but keras-mamsf is checked below {keras_internals.KERAS_BELOW}")


def test_efficientnet_builder():
    def check():
        builder, blocks = keras_internals.efficientnet_builder()
        assert callable(builder) and len(blocks) == 7
        assert {"kernel_size", "repeats", "filters_in", "filters_out", "se_ratio"} <= set(blocks[0])
        lite = builder(1.0, 1.0, 224, activation="relu6", blocks_args=[dict(b, se_ratio=0.0) for b in blocks],
                       name="lite", include_top=False, weights=None, input_shape=(32, 32, 3))
        assert lite.get_layer("top_activation") is not None

    _loudly(check)


def test_efficientnet_imagenet_stddev():
    def check():
        stddev = keras_internals.efficientnet_imagenet_stddev()
        assert len(stddev) == 3 and all(0.2 < value < 0.25 for value in stddev)  # ImageNet's RGB std over [0, 1]

    _loudly(check)


def test_optimizer_variable_index_is_the_build_order():
    def check():
        variables = [keras.Variable(float(i), name=f"v{i}") for i in range(3)]
        optimizer = keras.optimizers.AdamW(0.1)
        optimizer.build(variables)
        assert [keras_internals.optimizer_variable_index(optimizer, v) for v in variables] == [0, 1, 2]
        # as update_step receives it under TensorFlow: the backend's own variable
        assert keras_internals.optimizer_variable_index(optimizer, getattr(variables[2], "value", variables[2])) == 2

    _loudly(check)


def test_jax_state_layout_round_trips_through_a_stateless_scope():
    """The JAX trainer's state order (trainable, non-trainable, optimizer, metrics), exercised
    with the TensorFlow backend's variables; the JAX worker runs it inside `fit`."""
    def check():
        model = toy_model("inplace", decay=0.5, warmup=False)
        model.compile(optimizer="sgd", loss="mse")
        model.optimizer.build(model.trainable_variables)
        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                 [v.value for v in model.optimizer.variables], [v.value for v in model.metrics_variables])
        mapping = keras_internals.jax_state_mapping(model, state)
        assert len(mapping) == sum(len(part) for part in state)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            model.anchor_layers[0].update_anchor(True)
        new_state = keras_internals.jax_state_from_scope(model, scope, state)
        assert [len(part) for part in new_state] == [len(part) for part in state]
        assert new_state[2] is state[2] and new_state[3] is state[3]

    _loudly(check)


def test_in_stateless_scope_tells_the_scope_apart():
    def check():
        assert not keras_internals.in_stateless_scope()
        with keras.StatelessScope():
            assert keras_internals.in_stateless_scope()
        assert not keras_internals.in_stateless_scope()

    _loudly(check)
