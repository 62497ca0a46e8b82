"""The tf.data input pipeline from NIH records (PNG files) to model batches.

    dataset = make_dataset(records, image_size=224, batch_size=32, training=True, seed=0)

decode PNG (grayscale; RGBA files are converted) -> antialiased area resize to
`image_size` -> float32 0..255 -> 3 channels -> batch -> (training only) augmentation with
Keras core layers: flip, small rotation / zoom / translation, contrast / brightness ->
`prefetch(AUTOTUNE)`. Labels are float32 (14,) in CHESTXRAY14_LABELS order.

Deterministic for a given seed: file order, shuffling, class-aware sampling and augmentation
are all seeded and the parallel map keeps its order. With `epoch=` (a `tf.Variable` that
`EpochSeed` sets at each epoch's start), an epoch's order and draws are a function of
(seed, epoch) alone, so a run resumed at epoch k sees exactly the data an uninterrupted run saw.
`cache=True` keeps decoded images in memory (`cache="path"` on disk) after the first epoch.
`class_aware=True` draws each epoch's images with probability proportional to 1 / (images of its
rarest positive label) (normal images count as one more class), so the tail is seen as often as
the head.
"""

import numpy as np

AUGMENT_DEFAULTS = {"flip": True, "rotation": 0.02, "zoom": 0.08, "translation": 0.05, "contrast": 0.15,
                    "brightness": 0.1}


def class_aware_weights(labels):
    """Per-image sampling weight: 1 / (count of the rarest class the image belongs to)."""
    labels = np.asarray(labels, dtype="float32")
    normal = labels.sum(axis=1) == 0
    counts = labels.sum(axis=0)
    weights = np.zeros(len(labels), dtype="float64")
    for i, row in enumerate(labels):
        if normal[i]:
            weights[i] = 1.0 / max(normal.sum(), 1)
        else:
            weights[i] = 1.0 / counts[row > 0].min()
    return weights / weights.sum()


def augmentation_settings(strength=1.0, **overrides):
    """The augmentation's magnitudes: `AUGMENT_DEFAULTS` with `overrides`, every magnitude but the flip
    times `strength` (2.0 turns the default +-7 degrees and 8% zoom into +-14 and 16%)."""
    settings = dict(AUGMENT_DEFAULTS, **overrides)
    unknown = set(settings) - set(AUGMENT_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown augmentation setting(s) {sorted(unknown)}; known: {sorted(AUGMENT_DEFAULTS)}")
    if strength < 0:
        raise ValueError(f"augmentation strength must be >= 0, got {strength}")
    # Rounded so that a protocol prints 0.3, not 0.30000000000000004.
    return {name: value if name == "flip" else round(value * strength, 9) for name, value in settings.items()}


def augmentation_layers(seed=0, strength=1.0, **overrides):
    """The training augmentation as a list of Keras core layers (applied inside tf.data), with the
    magnitudes of `augmentation_settings(strength, **overrides)`."""
    import keras

    settings = augmentation_settings(strength, **overrides)
    layers = []
    if settings["flip"]:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if settings["rotation"]:
        layers.append(keras.layers.RandomRotation(settings["rotation"], fill_mode="constant", seed=seed + 1))
    if settings["zoom"]:
        layers.append(keras.layers.RandomZoom(settings["zoom"], fill_mode="constant", seed=seed + 2))
    if settings["translation"]:
        t = settings["translation"]
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=seed + 3))
    if settings["contrast"]:
        layers.append(keras.layers.RandomContrast(settings["contrast"], value_range=(0, 255), seed=seed + 4))
    if settings["brightness"]:
        layers.append(keras.layers.RandomBrightness(settings["brightness"], value_range=(0, 255), seed=seed + 5))
    return layers


def area_resize(image, image_size):
    """The one resize of every source: antialiased area resize to (image_size, image_size), float32."""
    import tensorflow as tf

    return tf.image.resize(image, (image_size, image_size), method="area", antialias=True)


def decode_and_resize(path, image_size):
    """A PNG file -> float32 (image_size, image_size, 1) in 0..255 (area / antialiased resize)."""
    import tensorflow as tf

    image = area_resize(tf.io.decode_png(tf.io.read_file(path), channels=1), image_size)
    return tf.ensure_shape(image, (image_size, image_size, 1))


def make_dataset(records, image_size, batch_size, training=False, seed=0, cache=False, class_aware=False,
                 augment=None, channels=3, drop_remainder=False, epoch=None):
    """A `tf.data.Dataset` of `(images, labels)` batches; see the module docstring.

    `augment`: None (the default augmentation), False (none), a dict of `AUGMENT_DEFAULTS`
    overrides, or a list of Keras layers (`augmentation_layers(...)`, whose seeds `EpochSeed`
    resets per epoch). `epoch`: an int64 `tf.Variable` holding the current epoch (training only).
    """
    import tensorflow as tf

    if not records:
        raise ValueError("make_dataset got no records: the split is empty (check --view and the split lists)")
    paths = np.asarray([r.path for r in records])
    labels = np.stack([r.labels for r in records]).astype("float32")
    if any(not p for p in paths):
        raise ValueError("records without image paths (read with read_metadata?): read the root with read_nih")
    if cache and class_aware and training:
        raise ValueError("cache and class_aware sampling do not combine (sampling re-reads files); drop one")

    def load(path, label):
        return decode_and_resize(path, image_size), label

    if training and epoch is not None:
        if cache:
            raise ValueError("cache and per-epoch seeding do not combine (each epoch re-reads in its own order)")
        dataset = tf.data.Dataset.range(len(paths)).map(_epoch_picker(paths, labels, seed, epoch, class_aware))
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    elif training and class_aware:
        # Each epoch draws len(records) indices with class-aware probabilities; a seeded random
        # stream that re-randomises per epoch keeps it deterministic without repeating epochs.
        cumulative = tf.constant(np.cumsum(class_aware_weights(labels)))
        paths_t, labels_t = tf.constant(paths), tf.constant(labels)

        def pick(random_int):
            # a uniform draw over the weights
            u = tf.cast(random_int % (2**32), tf.float64) / float(2**32) * cumulative[-1]
            index = tf.minimum(tf.searchsorted(cumulative, u[None])[0], len(paths) - 1)
            return tf.gather(paths_t, index), tf.gather(labels_t, index)

        dataset = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(len(paths)).map(pick)
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        if cache:  # decode once, keep the decoded images; shuffle those (a bounded buffer)
            dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache("" if cache is True else str(cache))
            if training:
                dataset = dataset.shuffle(min(len(paths), 2048), seed=seed, reshuffle_each_iteration=True)
        else:  # shuffle the names (cheap, the whole split), then decode
            if training:
                dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return finish(dataset, batch_size, training, seed, augment, channels, drop_remainder)


def _epoch_picker(paths, labels, seed, epoch, class_aware):
    """`index -> (path, label)` for one epoch, a pure function of (seed, epoch, index): a seeded
    permutation (`index_shuffle`), or class-aware draws with stateless uniforms."""
    import tensorflow as tf

    paths_t, labels_t = tf.constant(paths), tf.constant(labels)
    cumulative = tf.constant(np.cumsum(class_aware_weights(labels))) if class_aware else None

    def pick(index):
        epoch_now = tf.cast(epoch.read_value(), tf.int64)
        if class_aware:
            u = tf.random.stateless_uniform([], seed=tf.stack([seed * 1_000_003 + epoch_now, index]), dtype=tf.float64)
            chosen = tf.minimum(tf.searchsorted(cumulative, (u * cumulative[-1])[None])[0], len(paths) - 1)
        else:
            chosen = tf.random.experimental.index_shuffle(index, tf.stack([tf.constant(seed, tf.int64), epoch_now]),
                                                          len(paths) - 1)
        return tf.gather(paths_t, chosen), tf.gather(labels_t, chosen)

    return pick


def reseed_augmentation(layers, epoch):
    """Sets every augmentation layer's random state to a function of (its seed, epoch), so an
    epoch's draws do not depend on the epochs before it (see `EpochSeed`)."""
    for layer in layers:
        # Keras keeps one generator per backend in use: `generator`, and for a layer called inside
        # tf.data under another Keras backend, `_backend_generators` (the one private name here).
        generators = [layer.generator, *getattr(layer, "_backend_generators", {}).values()]
        for generator in generators:
            state = np.array([(int(layer.seed) + 1_000_003 * int(epoch)) % 2**31, 0])
            generator.state.assign(state.astype(generator.state.dtype))


def finish(dataset, batch_size, training=False, seed=0, augment=None, channels=3, drop_remainder=False):
    """Shared tail of every source (PNG files, prepared shards, ChestMNIST arrays): a dataset of
    `((H, W, 1) image in 0..255, uint8 or float32; labels)` -> batches of float32 images with
    `channels` channels, training augmentation, prefetch."""
    import tensorflow as tf

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")

    def to_float(images, labels):
        # On whole batches, after batching: uint8 sources are copied at a quarter of the size.
        images = tf.cast(images, tf.float32)
        return (tf.tile(images, (1, 1, 1, 3)) if channels == 3 else images), labels

    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not False:
        layers = augment if isinstance(augment, list) else augmentation_layers(seed, **(augment or {}))

        def apply(images, label):
            for layer in layers:
                images = layer(images, training=True)
            return images, label

        # Sequential on purpose: the layers' seed state advances per call, so a parallel map
        # would make the draws depend on thread timing.
        dataset = dataset.map(apply)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
