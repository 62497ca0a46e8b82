"""Saving and loading `.keras` files: atomic writes, `safe_mode=True`, no legacy `.h5`."""

import os

import keras

# A file's compile config names our losses, metrics and optimizer: registered before any load, so a
# checkpoint compiles in a fresh interpreter (not only after `mamsf train` imported them).
from keras_mamsf import losses as _losses  # noqa: F401
from keras_mamsf import optimizers as _optimizers  # noqa: F401
from keras_mamsf.metrics import macro_auc as _macro_auc  # noqa: F401
from keras_mamsf.utils.atomic import atomic_path


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
