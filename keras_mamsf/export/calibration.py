"""Images for int8 calibration (training split) and for parity checks (held-out split).

Both come from a dataset root in the NIH layout (through the official, patient-disjoint split)
or from a folder of prepared shards (`mamsf prepare`), through the same decode and area resize
as training. `select_images` picks a class-covering sample: positives of every class first (a
class with fewer positives than its quota has them repeated, so rare findings weigh in the
calibrated ranges), then images drawn at random (normals included) up to `count`.
"""

import os

import numpy as np


def select_images(labels, count, seed=0):
    """Indices (with repeats for rare classes) of a seeded, class-covering sample of `labels`."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("no images to choose from: the split is empty")
    rng = np.random.default_rng(seed)
    classes = labels.shape[1]
    quota = max(1, count // (2 * classes))
    chosen = []
    for column in range(classes):
        positives = np.flatnonzero(labels[:, column] > 0)
        if len(positives):
            chosen.extend(rng.choice(positives, size=quota, replace=len(positives) < quota).tolist())
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    missing = max(0, count - len(chosen))
    chosen.extend(rng.choice(rest, size=min(missing, len(rest)), replace=False).tolist())
    return np.asarray(chosen[:count] if len(chosen) > count else chosen, dtype="int64")


def prepared_sizes(root):
    """Sizes (px) of prepared shards under `root`, e.g. [224, 256]; [] when it holds none."""
    from keras_mamsf.data.shards import DATASET_NAME, find_shards

    base = os.path.join(str(root), DATASET_NAME)
    if not os.path.isdir(base):
        return []
    sizes = [int(d[:-2]) for d in os.listdir(base) if d.endswith("px") and d[:-2].isdigit()]
    return sorted(s for s in sizes if find_shards(root, s) is not None)


def load_images(root, split, image_size, channels=3, count=300, seed=0):
    """`(images float32 (N, S, S, channels) 0..255, labels (N, 14), source)` from `root`'s `split`."""
    if root is None or not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such dataset folder (an NIH-layout root or prepared shards)")
    sizes = prepared_sizes(root)
    if sizes:
        return _from_shards(root, sizes, split, image_size, channels, count, seed)
    return _from_nih(root, split, image_size, channels, count, seed)


def _from_nih(root, split, image_size, channels, count, seed):
    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.pipeline import make_dataset

    # Calibration and parity images are a sample: a bad file is left out and counted, never
    # an error that would suggest a flag the exporting command (export, demo) does not have.
    index = nih.read_nih(root, on_bad_image="skip")
    records = splits.make_splits(index.records, index.lists, "official", seed=0)[split]
    if not records:
        raise ValueError(f"{root}: the {split} split is empty")
    chosen = select_images(np.stack([r.labels for r in records]), count, seed)
    picked = [records[i] for i in chosen]
    images, labels = _collect(make_dataset(picked, image_size, 64, channels=channels))
    skipped = sum(index.skipped.values())
    note = f"; {skipped} bad image(s) of the root left out: {', '.join(index.skipped_names[:3])}" if skipped else ""
    return images, labels, f"{root} ({split} split, PNG{note})"


def _from_shards(root, sizes, split, image_size, channels, count, seed):
    import tensorflow as tf

    from keras_mamsf.data.shards import make_shard_dataset

    size = next((s for s in sizes if s >= image_size), sizes[-1])  # downscale rather than upscale
    labels_only = make_shard_dataset(root, size, split, 256, channels=1, image_size=size)
    labels = np.concatenate([y for _, y in labels_only.as_numpy_iterator()])
    chosen = select_images(labels, count, seed)
    wanted = tf.constant(np.unique(chosen))
    dataset = make_shard_dataset(root, size, split, 64, channels=channels, image_size=image_size)
    images, all_labels = _collect(dataset.unbatch().enumerate().filter(
        lambda i, _: tf.reduce_any(tf.equal(i, wanted))).map(lambda i, pair: pair).batch(64))
    position = {int(v): k for k, v in enumerate(np.unique(chosen))}
    order = [position[int(i)] for i in chosen]
    return images[order], all_labels[order], f"{root} ({split} split, {size}px shards)"


def _collect(dataset):
    images, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images).astype("float32"), np.concatenate(labels).astype("float32")
