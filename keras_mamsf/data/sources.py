"""Where a split's images come from: the one place that decides "PNG files or prepared shards".

    source = image_source(parts, shards=None)      # PngImages(parts), or ShardImages(shards)
    train_ds = source.dataset("train", 224, 32, training=True, seed=0, channels=1)
    names, patients = source.ids("test", 224)

Both kinds give `(images float32 0..255, labels)` batches through the same decode, area resize and
augmentation tail (`pipeline.finish`), so a model sees the same pixels either way. Training, scoring,
BatchNorm re-estimation and export calibration all read their images through these.
"""

import numpy as np

from keras_mamsf.data.pipeline import make_dataset
from keras_mamsf.data.shards import (
    find_shards,
    make_shard_dataset,
    prepared_sizes,
    shard_ids,
)


def dataset_arrays(dataset):
    """`(images float32, labels float32)` of every batch of an `(images, labels)` dataset; ValueError when it is
    empty."""
    batches = list(dataset.as_numpy_iterator())
    if not batches:
        raise ValueError("no images in the split")
    images, labels = (np.concatenate(parts) for parts in zip(*batches))
    return images.astype("float32"), labels.astype("float32")


def sample_indices(count, total, seed=0):
    """Sorted indices of `count` of `total` images (all when `count >= total`), seeded."""
    if count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))


class PngImages:
    """The splits of an NIH-layout root, read from their PNG files.

    Args:
        parts: `{split: [Record, ...]}` (`splits.make_splits`).
        note: what to say about the root in a `source` line (e.g. the bad images left out).
        root: the root's path, for error lines.
    """

    kind = "png"

    def __init__(self, parts, note="", root=None):
        self.parts = parts
        self.note = note
        self.root = root

    def dataset(self, split, image_size, batch_size, channels=3, training=False, seed=0, augment=None,
                class_aware=False, epoch=None, indices=None):
        """`(images, labels)` batches of `split` (only the images at `indices`, when given)."""
        records = self.parts[split] if indices is None else [self.parts[split][i] for i in indices]
        return make_dataset(records, image_size, batch_size, training=training, seed=seed, class_aware=class_aware,
                            augment=augment, channels=channels, epoch=epoch)

    def labels(self, split, image_size=None):
        if not self.parts[split]:
            raise ValueError(f"{self.root or 'the data'}: the {split} split is empty")
        return np.stack([record.labels for record in self.parts[split]])

    def ids(self, split, image_size=None):
        """`(image names, patient ids)` in the order `dataset(split, ...)` reads them when not training."""
        records = self.parts[split]
        return [r.image for r in records], [r.patient for r in records]

    def sample(self, split, count, image_size, batch_size, channels=3, seed=0):
        """A seeded sample of `count` images of `split`, unaugmented."""
        chosen = sample_indices(count, len(self.parts[split]), seed)
        return self.dataset(split, image_size, batch_size, channels=channels, indices=chosen)

    def describe(self, split, image_size=None):
        return f"{split} split, PNG{self.note}"


class ShardImages:
    """The splits of a folder of prepared shards (`mamsf prepare`), one folder per image size.

    Args:
        root: the shards folder.
        exact_size: read only shards of the asked size (training); otherwise the smallest stored size
            above it, resized down (or the largest, resized up): export's calibration and parity.
    """

    kind = "shards"

    def __init__(self, root, exact_size=True):
        self.root = root
        self.exact_size = exact_size

    def stored_size(self, image_size):
        if find_shards(self.root, image_size) is not None:
            return image_size
        if self.exact_size:
            raise FileNotFoundError(f"{self.root}: no {image_size}px shards; run `mamsf prepare --data ROOT "
                                    f"--size {image_size} --out {self.root}`")
        sizes = prepared_sizes(self.root)
        if not sizes:
            raise FileNotFoundError(f"{self.root}: no prepared shards (run `mamsf prepare`)")
        return next((size for size in sizes if size >= image_size), sizes[-1])  # downscale rather than upscale

    def dataset(self, split, image_size, batch_size, channels=3, training=False, seed=0, augment=None,
                class_aware=False, epoch=None, indices=None):
        """Batches of `split`. A training epoch's shuffle is not seeded per epoch (`epoch` is not used):
        a resumed epoch reorders. `class_aware` sampling needs per-image labels before reading: refused."""
        import tensorflow as tf

        if class_aware:
            raise ValueError("class_aware sampling reads the PNGs: drop --shards or set class_aware=false")
        stored = self.stored_size(image_size)
        if indices is None:
            return make_shard_dataset(self.root, stored, split, batch_size, training=training, seed=seed,
                                      augment=augment, channels=channels, image_size=image_size)
        wanted = np.unique(np.asarray(indices, "int64"))
        picked = make_shard_dataset(self.root, stored, split, batch_size, channels=channels, image_size=image_size)
        picked = picked.unbatch().enumerate().filter(lambda i, _: tf.reduce_any(tf.equal(i, wanted)))
        return picked.map(lambda i, pair: pair).batch(batch_size)

    def labels(self, split, image_size):
        stored = self.stored_size(image_size)
        batches = make_shard_dataset(self.root, stored, split, 256, channels=1, image_size=stored)
        return np.concatenate([y for _, y in batches.as_numpy_iterator()])

    def ids(self, split, image_size):
        return shard_ids(self.root, self.stored_size(image_size), split)

    def sample(self, split, count, image_size, batch_size, channels=3, seed=0):
        """The first `count` images of `split` in file order (reading shards at random costs a full pass)."""
        return self.dataset(split, image_size, batch_size, channels=channels).unbatch().take(count).batch(batch_size)

    def describe(self, split, image_size=None):
        size = "" if image_size is None else f"{self.stored_size(image_size)}px "
        return f"{split} split, {size}shards"


def split_dataset(root, split, image_size, batch_size, shards=None, training=False, seed=0, val_fraction=0.1,
                  split_seed=0, **kwargs):
    """A split for training or evaluation: from shards when `shards` holds `image_size` px ones,
    else from the raw PNGs under `root` (official split with the same val carve as `prepare`'s
    defaults: `val_fraction`, `split_seed`). Returns `(dataset, source)`, source "shards" or "png"."""
    if shards is not None and find_shards(shards, image_size) is not None:
        source = ShardImages(shards)
    else:
        from keras_mamsf.data import nih, splits

        index = nih.read_nih(root)
        source = PngImages(splits.make_splits(index.records, index.lists, "official", val_fraction, split_seed))
    return source.dataset(split, image_size, batch_size, training=training, seed=seed, **kwargs), source.kind


def image_source(parts=None, shards=None):
    """`ShardImages(shards)` when a shards folder is given, else `PngImages(parts)`."""
    return ShardImages(shards) if shards is not None else PngImages(parts)


def open_root(root, split_seed=0, exact_size=False, split=None):
    """The images under `root`, whichever kind it is: prepared shards, or an NIH-layout root read through
    its official, patient-disjoint split (bad images left out and counted in the note). `split`: the
    `make_splits` settings of a training run (`{"method", "val_fraction", "seed", "view"}`, as
    `inference.model_card.run_split` reads them), so that its val split is the run's own."""
    import os

    if root is None or not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such dataset folder (an NIH-layout root or prepared shards)")
    if prepared_sizes(root):
        return ShardImages(root, exact_size=exact_size)
    from keras_mamsf.data import nih, splits

    # Calibration and parity images are a sample: a bad file is left out and counted, never an error that
    # would suggest a flag the exporting command (export, demo) does not have.
    index = nih.read_nih(root, on_bad_image="skip")
    skipped = sum(index.skipped.values())
    note = f"; {skipped} bad image(s) of the root left out: {', '.join(index.skipped_names[:3])}" if skipped else ""
    settings = dict({"method": "official", "seed": split_seed}, **(split or {}))
    return PngImages(splits.make_splits(index.records, index.lists, **settings), note=note, root=root)
