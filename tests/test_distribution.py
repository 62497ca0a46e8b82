"""`distributed(...)`: the engine per backend and its one-line refusals (2-replica runs: test_backends.py)."""

import keras
import pytest
import tensorflow as tf

from keras_mamsf.training import distributed, replica_count


def test_none_is_a_no_op_and_counts_one_replica():
    with distributed("none") as engine:
        assert engine is None
        assert not tf.distribute.has_strategy()
    assert replica_count(engine) == 1


def test_auto_on_tensorflow_is_mirrored_and_variables_are_mirrored():
    with distributed("auto", devices=["/cpu:0"]) as engine:
        assert isinstance(engine, tf.distribute.MirroredStrategy)
        assert tf.distribute.has_strategy()
        variable = keras.Variable(1.0, aggregation="mean")
    assert not tf.distribute.has_strategy()
    assert replica_count(engine) == 1
    assert isinstance(variable.value, tf.distribute.DistributedValues)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("data_parallel", "--distribute data_parallel is not a tensorflow engine: use mirrored or multiworker"),
        ("horovod", "unknown distribution 'horovod': choose one of none, auto, mirrored, multiworker, data_parallel"),
    ],
)
def test_wrong_engine_is_refused_in_one_line(kind, message):
    with pytest.raises(ValueError) as error:
        with distributed(kind):
            pass
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
