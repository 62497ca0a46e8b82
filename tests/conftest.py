import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_mamsf as mamsf  # noqa: E402

IMAGE = 32
CLASSES = 3


def tiny_model(anchor="branch", **kwargs):
    """The real MAMSF model (EfficientNetB0 backbone) at test size."""
    options = dict(input_shape=(IMAGE, IMAGE, 3), num_classes=CLASSES, anchor=anchor, fusion_filters=8, dropout=0.0)
    options.update(kwargs)
    return mamsf.build_model(**options)


def batch(n=8, seed=0, size=IMAGE, classes=CLASSES, channels=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, size, size, channels)).astype("float32")
    y = (rng.random((n, classes)) < 0.4).astype("float32")
    return x, y


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def copy_dropout_seeds(source, target):
    """Give `target` the dropout RNG state of `source` (seed states are not weights)."""
    seeds = [[v for v in m.variables if "seed_generator_state" in v.path] for m in (source, target)]
    for src, dst in zip(*seeds, strict=True):
        dst.assign(src.numpy())


@pytest.fixture
def float32_policy():
    """Restores the global dtype policy after a test that changes it."""
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)
