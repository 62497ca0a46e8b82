"""ChestMNIST (MedMNIST): the same 14 ChestX-ray14 labels at 28 px (or 64 / 128 / 224 px in MedMNIST+).

    splits = read_chestmnist("chestmnist.npz")     # {"train": (images, labels), "val": ..., "test": ...}
    train_ds = chestmnist_dataset("chestmnist.npz", "train", image_size=64, batch_size=128, training=True)

The `.npz` file is the one MedMNIST distributes (`train_images` (N, H, W) uint8, `train_labels`
(N, 14), likewise `val_` and `test_`); download it yourself, nothing is fetched here. MedMNIST
keeps NIH's label order, which is CHESTXRAY14_LABELS.
"""

import os

import numpy as np

from keras_mamsf.data.nih import DataError
from keras_mamsf.labels import CHESTXRAY14_LABELS

SPLITS = ("train", "val", "test")


def read_chestmnist(path):
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; download chestmnist.npz from MedMNIST (nothing is fetched here)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    with archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive.files]
        if missing:
            raise DataError(f"{path}: missing array(s) {', '.join(missing)}; is it MedMNIST's chestmnist.npz?")
        result = {}
        for split in SPLITS:
            images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
            if images.ndim == 4 and images.shape[-1] in (1, 3):
                images = images.mean(axis=-1).astype(images.dtype) if images.shape[-1] == 3 else images[..., 0]
            if images.ndim != 3 or labels.shape != (len(images), len(CHESTXRAY14_LABELS)):
                raise DataError(
                    f"{path}: {split}_images {images.shape} / {split}_labels {labels.shape}: expected (N, H, W) "
                    f"and (N, {len(CHESTXRAY14_LABELS)})"
                )
            result[split] = (images, labels.astype("float32"))
    return result


def chestmnist_dataset(path, split, image_size, batch_size, training=False, seed=0, **kwargs):
    """`(images, labels)` batches of one ChestMNIST split through the shared pipeline tail."""
    import tensorflow as tf

    from keras_mamsf.data.pipeline import area_resize, finish

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    images, labels = read_chestmnist(path)[split]
    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], labels))

    def resize(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape[0] != image_size:
            image = area_resize(image, image_size)
        return image, label

    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    return finish(dataset, batch_size, training, seed, **kwargs)
