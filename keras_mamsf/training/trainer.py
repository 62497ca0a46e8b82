"""`train`: one MAMSF run from an NIH-layout root to an evaluated model, resumable after a crash.

    summary = train(TrainConfig(epochs=5, image_size=128), "data/ChestX-ray14", "runs/a")

RUN_DIR gets: `config.toml` (the resolved config; `--config` it to repeat the run), `backup/`
(Keras' `BackupAndRestore`: weights, optimizer, anchor and the epoch), `logs/` (TensorBoard),
`history.csv` (`CSVLogger`), `best.keras` (best validation macro AUC, atomic) with `best.keras.json`,
`final.keras` (the last epoch's model), `ood_guard.npz` (the out-of-distribution guard: training images,
threshold on val; `keras_mamsf.guard`), and the evaluation of `best.keras` on the test split:
`predictions.npz`, `metrics.json` (with how many test images the guard flags), `thresholds.json` (chosen
on val by `threshold_rule`), `report.md` / `.html`, plots;
with `drift_monitor = true`, `drift.json`, `drift_centroids.npz` and `drift.png` (`DriftMonitor`).

A run killed at any point and started again with the same command continues at the start of the
epoch it was in, with optimizer, anchor, data order and augmentation as an uninterrupted run
would have them (the data pipeline is seeded per epoch: `EpochSeed`), so it ends with the same
weights (tested to 1e-5 on CPU).
"""

import json
import math
import os

from keras_mamsf.training.config import ConfigError

PROGRESS = {"auto": "auto", "bar": 1, "epoch": 2, "none": 0}


def train(config, data_root, run_dir, shards=None, distribute="none", on_bad_image="skip", verify="decode",
          verbose="auto", log=print, index=None):
    """Trains, checkpoints and evaluates one run; returns the run's summary dict (also `summary.json`).
    `index`: the root's `NihIndex` when already read (`mamsf ablate` reads it once for all runs)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_mamsf.backbones.pretrained import describe_weights_source, weights_source
    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.sources import image_source
    from keras_mamsf.inference.model_card import INITIAL_WEIGHTS_NAME
    from keras_mamsf.losses import loss_from_settings
    from keras_mamsf.metrics.macro_auc import MacroAUC
    from keras_mamsf.models import MAMSFClassifier, save_model
    from keras_mamsf.optimizers import DiscriminativeAdamW
    from keras_mamsf.training.callbacks import (
        BestCheckpoint,
        EpochSeed,
        ValidationMacroAUC,
        WithWeightEMA,
    )
    from keras_mamsf.training.distribution import distributed
    from keras_mamsf.utils import write_json_atomic
    from keras_mamsf.utils.environment import auto_dtype_policy, slow_backend_note

    if shards is not None:
        from keras_mamsf.data.shards import find_shards

        if find_shards(shards, config.image_size) is None:
            raise ConfigError(f"{shards}: no {config.image_size}px shards; run `mamsf prepare --data {data_root} "
                              f"--size {config.image_size} --out {shards}` or drop --shards")
    if index is None:  # bad files: found before training
        index = nih.read_nih(data_root, on_bad_image=on_bad_image, verify=verify)
    parts = splits.make_splits(index.records, index.lists, config.split, config.val_fraction, config.split_seed,
                               config.view)
    for name in ("train", "val", "test"):
        if not parts[name]:
            raise ConfigError(f"the {name} split of {data_root} is empty (split {config.split!r}, val_fraction "
                              f"{config.val_fraction}); add images or change the split settings")
    os.makedirs(run_dir, exist_ok=True)
    initial_weights = weights_source(config.backbone, config.model_arguments()["weights"])
    write_json_atomic(os.path.join(run_dir, INITIAL_WEIGHTS_NAME), initial_weights)
    config_path = config.write(os.path.join(run_dir, "config.toml"),
                               notes=[f"initial weights: {describe_weights_source(initial_weights)}"])
    train_labels = np.stack([r.labels for r in parts["train"]])
    steps_per_epoch = math.ceil(len(parts["train"]) / config.batch_size)
    log(f"mamsf train: {config.backbone} anchor={config.anchor} at {config.image_size} px on "
        f"{keras.backend.backend()}; train {len(parts['train'])} / val {len(parts['val'])} / test "
        f"{len(parts['test'])} images from {data_root}"
        + (f"; skipped {sum(index.skipped.values())} bad image(s): {', '.join(index.skipped_names[:5])}"
           if index.skipped else "")
        + f"; {config.epochs} epochs x {steps_per_epoch} steps; run folder {run_dir}")
    slow = slow_backend_note()
    if slow:
        log(slow)

    keras.utils.set_random_seed(config.seed)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    augmentation = training_augmentation(config)
    # Pre-resized shards are fast, but their shuffle is not seeded per epoch (a resumed epoch reorders).
    source = image_source(parts, shards)  # shards refuse class_aware sampling (it reads the PNGs) in one line
    train_ds = source.dataset("train", config.image_size, config.batch_size, channels=config.channels, training=True,
                              seed=config.seed, augment=augmentation or False, class_aware=config.class_aware,
                              epoch=epoch)
    val_ds = source.dataset("val", config.image_size, max(config.batch_size, 64), channels=config.channels)
    policy = auto_dtype_policy() if config.dtype_policy == "auto" else config.dtype_policy
    with distributed(distribute):
        model = MAMSFClassifier(**config.model_arguments(), num_classes=train_labels.shape[1], dtype=policy)
        model.compile(optimizer=DiscriminativeAdamW(_schedule(config, steps_per_epoch),
                                                    backbone_lr_scale=config.backbone_lr_scale,
                                                    scaled_variables=model.backbone_variables(),
                                                    weight_decay=config.weight_decay,
                                                    use_ema=config.weight_ema > 0,
                                                    ema_momentum=config.weight_ema or 0.99),
                      loss=loss_from_settings(config.loss, config.to_dict(), train_labels),
                      metrics=[MacroAUC(num_labels=train_labels.shape[1])])
        # Built now, so that BackupAndRestore's load_weights restores the optimizer's moments and step
        # too (an unbuilt optimizer is skipped with a warning, and the resumed run would diverge).
        model.optimizer.build(model.trainable_variables)
        # Order matters at an epoch's end: the best checkpoint and the logs are written before the
        # backup marks the epoch done, so a kill between them replays the epoch instead of losing it.
        selection = [ValidationMacroAUC(val_ds),
                     BestCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_macro_auc")]
        bn_batches = _precise_bn_batches(config, source)  # read once: the weight average's epochs and the end
        if config.weight_ema:  # validated and checkpointed with the averaged weights
            selection = [WithWeightEMA(selection, bn_batches or None)]
        history_path = os.path.join(run_dir, "history.csv")
        if not os.path.isdir(os.path.join(run_dir, "backup")) and os.path.exists(history_path):
            # A start from scratch (no backup to resume: a finished or a killed-before-epoch-1 run): an earlier
            # attempt's rows would be appended to (measured: an ablation run restarted after a kill logged 16).
            os.remove(history_path)
        callbacks = [
            EpochSeed(epoch, augmentation),
            keras.callbacks.TerminateOnNaN(),
            *selection,
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
            keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        ]
        if config.drift_monitor:  # its values reach the logs before CSVLogger and TensorBoard write them
            callbacks.insert(2 + len(selection), _drift_monitor(config, parts["val"], train_labels, run_dir))
        history = model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False,
                            verbose=PROGRESS[verbose] if verbose in PROGRESS else verbose)
    final_path = save_model(model, os.path.join(run_dir, "final.keras"))
    if model.stop_training and history.history.get("loss") and not math.isfinite(history.history["loss"][-1]):
        raise RuntimeError(f"training stopped on a non-finite loss (TerminateOnNaN); see {run_dir}/history.csv")
    best_path = os.path.join(run_dir, "best.keras")
    if not os.path.isfile(best_path):  # no finite validation figure at all (a single-class val split)
        best_path = final_path
    if config.precise_bn_images:
        images = _precise_bn(config, bn_batches, sorted({best_path, final_path}))
        log(f"BatchNorm statistics re-estimated from {images} training images in {os.path.basename(best_path)}"
            + ("" if best_path == final_path else f" and {os.path.basename(final_path)}"))
    guard = _fit_guard(config, source, run_dir, data_root, best_path)
    log(f"OOD guard: {guard.source}; threshold {guard.threshold:.3f} (alpha {guard.alpha:g})")
    summary = evaluate_run(best_path, parts, config, run_dir, index, config_path, source)
    return summary


def _fit_guard(config, source, run_dir, data_root, model_path):
    """Fits the OOD guard on training images (threshold on the val split) with the features of the model at
    `model_path` and writes `ood_guard.npz`."""
    from keras_mamsf.guard import GUARD_NAME, guard_from_source
    from keras_mamsf.models import load_model

    guard = guard_from_source(source, config.image_size, config.channels, alpha=config.ood_alpha, seed=config.seed,
                              where=str(data_root), model=load_model(model_path, compile=False))
    guard.save(os.path.join(run_dir, GUARD_NAME))
    return guard


def _precise_bn(config, images, paths):
    """Re-estimates the BatchNorm statistics of the saved models at `paths` (rewritten atomically)
    from `images` (`_precise_bn_batches`); returns how many were used.
    On the saved files, after `fit`: outside any distribution strategy, and a rerun of a killed
    run re-estimates from the same images to the same values."""
    import keras

    from keras_mamsf.models import load_model, save_model
    from keras_mamsf.training.precise_bn import reestimate_batchnorm

    used = 0
    for path in paths:
        keras.utils.set_random_seed(config.seed)  # dropout in training mode: the same statistics on a rerun
        model = load_model(path)  # compiled: the file keeps its optimizer state
        used = reestimate_batchnorm(model, images)
        save_model(model, path)
    return used


def training_augmentation(config):
    """The augmentation layers of the training pipeline (`augment`, without the flip if not `augment_flip`,
    magnitudes scaled by `augment_strength`)."""
    from keras_mamsf.data.pipeline import augmentation_layers

    arguments = config.augmentation_arguments()
    return [] if arguments is None else augmentation_layers(config.seed, **arguments)


def _precise_bn_batches(config, source):
    """The unaugmented training image batches of the BatchNorm re-estimation ([] when it is off)."""
    if not config.precise_bn_images:
        return []
    dataset = source.sample("train", config.precise_bn_images, config.image_size, min(config.batch_size, 64),
                            channels=config.channels, seed=config.seed)
    return [x for x, _ in dataset.as_numpy_iterator()]


def evaluate_run(model_path, parts, config, run_dir, index, config_path, source):
    """Scores `model_path` on the test split (thresholds chosen on val) and writes the evaluation."""
    import numpy as np

    from keras_mamsf.backbones.pretrained import describe_weights_source
    from keras_mamsf.evaluation import evaluate_predictions
    from keras_mamsf.evaluation.report import write_evaluation
    from keras_mamsf.evaluation.scoring import score_split, split_source
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.inference.model_card import run_initial_weights

    batch = max(config.batch_size, 64)
    train_positives = np.stack([r.labels for r in parts["train"]]).sum(axis=0)
    runner = load_runner(model_path)
    flip = config.test_time_flip
    test, details = score_split(model_path, source, split="test", batch_size=batch, runner=runner, test_time_flip=flip)
    val, _ = score_split(model_path, source, split="val", batch_size=batch, runner=runner, test_time_flip=flip)
    guard_report = details.pop("ood_guard", None)
    source = split_source(model_path, index.root, "test", config.split, config.val_fraction, config.split_seed, index,
                          config=os.path.abspath(config_path),
                          initial_weights=describe_weights_source(run_initial_weights(model_path)), **details)
    metrics = evaluate_predictions(test, n_boot=config.n_boot, seed=config.seed, validation=val, source=source,
                                   threshold_rule=config.threshold_rule, min_sensitivity=config.min_sensitivity,
                                   delta=config.threshold_delta)
    if guard_report is not None:
        metrics["ood_guard"] = guard_report
    paths = write_evaluation(run_dir, test, metrics)
    summary = {"run_dir": run_dir, "model": model_path, "metrics": metrics, "paths": paths}
    from keras_mamsf.utils import write_text_atomic
    from keras_mamsf.utils.environment import describe

    # summary.json last: its presence marks a finished run (mamsf ablate skips those)
    write_text_atomic(os.path.join(run_dir, "summary.json"),
                      json.dumps({"model": model_path, "macro_auc": metrics["macro"]["auc"],
                                  "macro_auc_ci": metrics["macro"]["auc_ci"],
                                  "skipped_images": source["skipped_images"],
                                  "split_sizes": {name: len(parts[name]) for name in ("train", "val", "test")},
                                  "train_positives": dict(zip(test.labels, map(int, train_positives))),
                                  "environment": describe(), "paths": paths}, indent=2) + "\n")
    return summary


def _drift_monitor(config, val_records, train_labels, run_dir):
    """A `DriftMonitor` on a probe drawn from the validation split (only the probe's images are read)."""
    import numpy as np

    from keras_mamsf.data.pipeline import make_dataset
    from keras_mamsf.labels import CHESTXRAY14_LABELS
    from keras_mamsf.training.drift import DriftMonitor, select_probe

    chosen = select_probe(np.stack([r.labels for r in val_records]), config.drift_per_class, config.seed)
    probe = make_dataset([val_records[i] for i in chosen], config.image_size, 64, channels=config.channels)
    images, labels = (np.concatenate(parts) for parts in zip(*probe.as_numpy_iterator()))
    return DriftMonitor(images, labels, CHESTXRAY14_LABELS, per_class=None, seed=config.seed,
                        class_counts=train_labels.sum(axis=0), out_dir=run_dir)


def _schedule(config, steps_per_epoch):
    """Linear warmup over `warmup_epochs`, then cosine decay to 0 at the last step."""
    import keras

    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    return keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=config.learning_rate,
                                                  warmup_steps=warmup)
