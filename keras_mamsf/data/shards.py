"""Pre-resized TFRecord shards (the TFDS builder in `chestxray14/`): write once, read fast.

Decoding 1024x1024 PNGs is the bottleneck of training on ChestX-ray14 (about 100 images/s
per core); `prepare_shards` pays it once, and `make_shard_dataset` then reads the resized
images as raw uint8 bytes, with no decoding.

    prepare_shards("data/ChestX-ray14", "data/shards", size=256)   # = mamsf prepare
    train_ds = make_shard_dataset("data/shards", 256, "train", batch_size=32, training=True)
"""

import contextlib
import os
import sys

from keras_mamsf.data.pipeline import area_resize, finish

DATASET_NAME = "chestxray14"


def _builder(out_dir, size, **kwargs):
    from keras_mamsf.data.chestxray14.chestxray14_dataset_builder import (
        SIZES,
        Builder,
        size_config,
    )

    config = f"{size}px" if size in SIZES else size_config(size)
    return Builder(config=config, data_dir=str(out_dir), **kwargs)


def prepare_shards(root, out_dir, size=256, on_bad_image="error", val_fraction=0.1, seed=0):
    """Writes the shards of `root` (NIH layout) at `size` px under `out_dir`; returns a summary."""
    import tensorflow_datasets as tfds

    from keras_mamsf.data import nih

    if size < 32:
        raise ValueError(f"--size must be >= 32, got {size}")
    if not os.path.isdir(root):
        raise nih.DataError(f"{root}: no such folder; point --data at the ChestX-ray14 root (or run `mamsf synth`)")
    builder = _builder(out_dir, size, on_bad_image=on_bad_image, val_fraction=val_fraction, split_seed=seed)
    print(f"preparing {size} px shards of {root} in {out_dir} (every image decoded and resized once; nothing is "
          "downloaded)", file=sys.stderr, flush=True)
    tfds.disable_progress_bar()  # nested bars garble a log; the builder prints one line per tenth instead
    try:
        # TFDS prints "Downloading and preparing dataset" (it downloads nothing here) and its own notes to
        # stdout: not for the user, and stdout is kept for our report (`--json`).
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    except AssertionError as error:  # TFDS asserts on a missing / empty manual_dir and on failed writes
        raise nih.DataError(f"{root}: TFDS could not prepare the shards ({str(error).splitlines()[0]})") from None
    return {
        "shards": builder.data_dir,
        "size": size,
        "splits": {name: info.num_examples for name, info in builder.info.splits.items()},
        "skipped": getattr(builder, "skipped", {}),
        "val_fraction": val_fraction,
        "seed": seed,
    }


def find_shards(out_dir, size):
    """The prepared folder for `size` under `out_dir` (newest version), or None."""
    base = os.path.join(str(out_dir), DATASET_NAME, f"{size}px")
    if not os.path.isdir(base):
        return None
    versions = sorted(d for d in os.listdir(base)
                      if d[:1].isdigit() and os.path.isfile(os.path.join(base, d, "dataset_info.json")))
    return os.path.join(base, versions[-1]) if versions else None


def make_shard_dataset(out_dir, size, split, batch_size, training=False, seed=0, augment=None, channels=3,
                       drop_remainder=False, image_size=None):
    """`(images, labels)` batches from prepared shards, through the same tail as the raw pipeline."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    path = find_shards(out_dir, size)
    if path is None:
        raise FileNotFoundError(f"{out_dir}: no {size}px shards; run `mamsf prepare --data ROOT --size {size} --out "
                                f"{out_dir}`")
    builder = tfds.builder_from_directory(path)
    if split not in builder.info.splits:
        raise ValueError(f"{path}: no split {split!r}; it has {', '.join(builder.info.splits)}")
    read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=1) if training else None
    dataset = builder.as_dataset(split=split, shuffle_files=training, read_config=read_config)

    def to_pair(example):
        image = example["image"]  # uint8: cast to float after batching (pipeline.finish)
        if image_size is not None and image_size != size:
            image = area_resize(image, image_size)
        return image, example["labels"]

    dataset = dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        dataset = dataset.shuffle(min(builder.info.splits[split].num_examples, 4096), seed=seed,
                                  reshuffle_each_iteration=True)
    return finish(dataset, batch_size, training, seed, augment, channels, drop_remainder)


def prepared_sizes(root):
    """Sizes (px) of prepared shards under `root`, e.g. [224, 256]; [] when it holds none."""
    base = os.path.join(str(root), DATASET_NAME)
    if not os.path.isdir(base):
        return []
    sizes = [int(d[:-2]) for d in os.listdir(base) if d.endswith("px") and d[:-2].isdigit()]
    return sorted(s for s in sizes if find_shards(root, s) is not None)


def shard_ids(out_dir, size, split):
    """`(image names, patient ids)` of a prepared split, in the order `make_shard_dataset` reads
    it when not training (files and records in order)."""
    import tensorflow_datasets as tfds

    path = find_shards(out_dir, size)
    if path is None:
        raise FileNotFoundError(f"{out_dir}: no {size}px shards; run `mamsf prepare --data ROOT --size {size} --out "
                                f"{out_dir}`")
    dataset = tfds.builder_from_directory(path).as_dataset(split=split, shuffle_files=False)
    names, patients = [], []
    for example in tfds.as_numpy(dataset.map(lambda e: (e["image_index"], e["patient"]))):
        names.append(example[0].decode())
        patients.append(example[1].decode())
    return names, patients
