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


class EpochSeed(keras.callbacks.Callback):
    """At each epoch's start, sets the data pipeline's epoch variable and reseeds its augmentation
    layers and the model's own random layers (dropout, stochastic depth), so that epoch k's order,
    augmentation and dropout masks are a function of (seed, k) alone. With `BackupAndRestore`, a run
    killed in epoch k and started again replays epoch k exactly. (Keras' weight files do not hold
    the random layers' seed states, so without this a resumed run draws other dropout masks.)

    Args:
        epoch_variable: the int64 `tf.Variable` passed as `epoch=` to `pipeline.make_dataset`.
        augmentation: the augmentation layers passed as `augment=` to it (may be empty).
    """

    def __init__(self, epoch_variable, augmentation=()):
        super().__init__()
        self.epoch_variable = epoch_variable
        self.augmentation = list(augmentation)

    def on_train_begin(self, logs=None):
        import numpy as np

        # The states the random layers were built with (seeded by keras.utils.set_random_seed).
        self._seed_states = [(variable, np.array(keras.ops.convert_to_numpy(variable.value)))
                             for variable in self.model.variables if variable.name == "seed_generator_state"]

    def on_epoch_begin(self, epoch, logs=None):
        from keras_mamsf.data.pipeline import reseed_augmentation

        self.epoch_variable.assign(epoch)
        reseed_augmentation(self.augmentation, epoch)
        for variable, initial in self._seed_states:
            state = initial.astype("int64")
            state[0] = (state[0] + 1_000_003 * epoch) % 2**31
            state[1] = 0
            variable.assign(state.astype(initial.dtype))


class ValidationMacroAUC(keras.callbacks.Callback):
    """At each epoch's end, the exact macro AUC (rank-based, `keras_mamsf.evaluation`) and the loss
    on the validation data, as `val_macro_auc` and `val_loss` in the logs (so `CSVLogger`,
    `TensorBoard`, `History` and `BestCheckpoint` see them). Classes without a positive or a negative
    in the validation set are left out of the mean.

    Exact rather than binned: early in training, BatchNorm statistics lag and every validation
    probability sits within a hair of the others; a binned AUC then reads 0.5 while the ranking,
    which is what the AUC measures, is already informative.

    Args:
        dataset: the validation `(images, labels)` batches (not shuffled, finite).
    """

    def __init__(self, dataset):
        super().__init__()
        import numpy as np

        self.dataset = dataset
        self.labels = np.concatenate([labels for _, labels in dataset.as_numpy_iterator()])

    def on_epoch_end(self, epoch, logs=None):
        import numpy as np

        from keras_mamsf.stats.metrics import per_class_auc

        probs = np.asarray(self.model.predict(self.dataset, verbose=0), dtype="float64")
        names = [str(c) for c in range(self.labels.shape[1])]
        macro = per_class_auc(self.labels, probs, names)["macro"]
        if logs is not None:
            logs["val_macro_auc"] = float("nan") if macro is None else macro
            logs["val_loss"] = float(keras.ops.convert_to_numpy(self.model.loss(self.labels, probs.astype("float32"))))


class WithWeightEMA(keras.callbacks.Callback):
    """Runs `callbacks` at each epoch's end with the optimizer's moving average of the weights in the
    model (an optimizer built with `use_ema=True`), then puts the online weights back, so that
    validation and the best checkpoint see the average while training, the drift monitor and the
    backup keep the online weights (a backup of swapped weights would resume training from the
    average). The swap is Keras' own `SwapEMAWeights`; `fit` writes the average into the model when
    it ends.

    The average covers the trainable weights only. BatchNorm's moving statistics were gathered with
    the online weights and do not match the average's features; given `batches` (unaugmented training
    images), they are re-estimated for the averaged model (`precise_bn.reestimate_batchnorm`) before
    `callbacks` run and restored after, with every other non-trainable variable (the anchor, the
    random layers' seeds), so training goes on exactly as without this callback.

    Args:
        callbacks: the callbacks whose `on_epoch_end` should see the averaged model (validation, the
            best checkpoint); they get no other call.
        batches: image batches for the BatchNorm re-estimation, or None to evaluate the average with
            the online statistics.

    Example:

    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3, use_ema=True, ema_momentum=0.998), loss="bce")
    >>> model.fit(data, callbacks=[WithWeightEMA([ValidationMacroAUC(val), BestCheckpoint("best.keras")])])
    """

    def __init__(self, callbacks, batches=None):
        super().__init__()
        self.callbacks = list(callbacks)
        self.batches = batches
        self._swap = keras.callbacks.SwapEMAWeights()

    def set_model(self, model):
        super().set_model(model)
        for callback in [self._swap, *self.callbacks]:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in [self._swap, *self.callbacks]:
            callback.set_params(params)

    def on_epoch_end(self, epoch, logs=None):
        from keras_mamsf.training.precise_bn import reestimate_batchnorm

        saved = [(variable, keras.ops.copy(variable.value)) for variable in self.model.non_trainable_variables]
        self._swap.on_test_begin()
        try:
            if self.batches is not None:
                reestimate_batchnorm(self.model, self.batches)
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs)
        finally:
            self._swap.on_test_end()
            for variable, value in saved:
                variable.assign(value)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model (atomic `.keras`) whenever `monitor` beats the best value so far; the best
    value lives in `<path>.json` beside it, so a resumed run does not forget it (Keras'
    `ModelCheckpoint` starts from scratch after a restart and writes in place)."""

    def __init__(self, path, monitor="val_macro_auc", mode="max"):
        super().__init__()
        self.path, self.monitor, self.mode = str(path), monitor, mode
        self.record_path = self.path + ".json"

    def best(self):
        import json
        import os

        if not os.path.isfile(self.record_path):
            return None
        with open(self.record_path, encoding="utf-8") as handle:
            return json.load(handle)

    def on_epoch_end(self, epoch, logs=None):
        import json
        import math

        from keras_mamsf.models.io import save_model
        from keras_mamsf.utils import write_text_atomic

        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        best = self.best()
        better = best is None or (float(value) > best["value"] if self.mode == "max" else float(value) < best["value"])
        if better:
            save_model(self.model, self.path)
            write_text_atomic(self.record_path, json.dumps({"value": float(value), "epoch": epoch + 1,
                                                            "monitor": self.monitor}) + "\n")
