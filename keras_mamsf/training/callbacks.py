"""The callbacks every training run gets, from Keras itself."""

import keras


def default_callbacks(backup_dir=None, log_dir=None):
    """`TerminateOnNaN` always; `BackupAndRestore(backup_dir)` and `TensorBoard(log_dir)`
    when those folders are given. A NaN loss stops training at once, so neither the
    weights nor the anchor keep training on a diverged state."""
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir))
    return callbacks
