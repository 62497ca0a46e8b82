"""Scores of a model file on a split of an NIH-layout root: the `Predictions` that `evaluate` judges.

Any artifact runs in its own runtime (`keras_mamsf.inference.formats.load_runner`: `.keras`,
SavedModel, `.tflite`, `.onnx`), on images prepared exactly as in training (the PNG pipeline, or
prepared shards), so the int8 file's AUC on the real test split is measured as the device will
see it. An artifact with a manifest beside it is read through the output its parity check chose
(`use_output`: the host-side sigmoid of an int8 file's logits is finer than its 256-level probs).
"""

import numpy as np

from keras_mamsf.evaluation.predictions import Predictions


def score_split(model_path, source, split="test", batch_size=32, threads=None, runner=None, test_time_flip=None):
    """`(Predictions, details)` of `model_path` on `split` of `source` (a `data.sources` image source:
    PNG records or prepared shards, at the model's input size).

    `details` says where the images came from, the output read and the image size, and, when the artifact
    has the OOD guard's output and its threshold is known, `ood_guard`: how many images it flags and which
    (`guard.flagged_report`; metrics.json's `ood_guard`, not part of the source record). `runner`:
    `inference.formats.load_runner(model_path)` already loaded (scoring several splits loads once).
    `test_time_flip`: average each image's scores with its left-right mirror's (`runners.predict_scores`);
    None: as the model card says (`inference.model_card.uses_test_time_flip`). `details` records which.
    """
    from keras_mamsf.guard import flagged_report
    from keras_mamsf.inference import model_card as card
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.inference.runners import predict_scores, square_input

    labels, _, use_output = card.model_card(model_path)
    flip = card.uses_test_time_flip(model_path) if test_time_flip is None else bool(test_time_flip)
    runner = runner or load_runner(model_path, num_threads=threads)
    size, channels = square_input(runner, model_path)
    dataset = source.dataset(split, size, batch_size, channels=channels)
    image_index, patient_id = source.ids(split, size)
    y_true, y_score, ood = [], [], []
    for images, batch_labels in dataset.as_numpy_iterator():
        count = len(images)
        if count < batch_size:  # the last batch, padded: one input shape, so graph runtimes trace once
            images = np.concatenate([images, np.zeros((batch_size - count, *images.shape[1:]), images.dtype)])
        scores, outputs = predict_scores(runner, images, use_output, test_time_flip=flip)
        y_score.append(scores[:count])
        y_true.append(batch_labels)
        if "ood_score" in outputs:
            ood.append(np.asarray(outputs["ood_score"][:count], dtype="float64").reshape(-1))
    y_score = np.concatenate(y_score)
    if y_score.shape[1] != len(labels):
        raise ValueError(f"{model_path}: {y_score.shape[1]} outputs for {len(labels)} labels")
    predictions = Predictions(np.concatenate(y_true).round(), y_score, labels=labels, patient_id=patient_id,
                              image_index=image_index, source=f"{model_path} on {split}")
    details = {"images_from": source.kind, "output": use_output, "image_size": size, "channels": channels,
               "test_time_flip": flip}
    threshold = card.ood_threshold(model_path) if ood else None
    if threshold is not None:
        details["ood_guard"] = flagged_report(np.concatenate(ood), threshold, image_index)
    return predictions, details


def split_source(model_path, data_root, split, split_method, val_fraction, split_seed, index=None, **details):
    """The `source` of a `metrics.json` scored from a split: the model file and its SHA-256 (None for a
    SavedModel folder), the data root and split settings, the images skipped as bad (count, reasons, the
    first names; from the `NihIndex`, none when the images came from shards) and `details`."""
    import os

    from keras_mamsf.utils.digest import sha256_of

    skipped = {} if index is None else dict(index.skipped)
    from keras_mamsf.data.synth import is_synthetic

    return {"model": os.path.abspath(model_path),
            "model_sha256": sha256_of(model_path) if os.path.isfile(model_path) else None,
            "data": os.path.abspath(data_root), "synthetic": is_synthetic(data_root), "split": split,
            "split_method": split_method,
            "val_fraction": val_fraction, "split_seed": split_seed, **details,
            "skipped_images": {"count": sum(skipped.values()), "reasons": skipped,
                               "first": [] if index is None else index.skipped_names[:10]}}
