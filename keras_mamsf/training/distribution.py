"""One switch for multi-device training on the existing engines.

Build, compile *and* fit the model inside `distributed(...)`:

    with mamsf.training.distributed("auto") as engine:
        model = mamsf.build_model(...)
        model.compile(...)
        model.fit(train_ds, ...)

- TensorFlow: `"mirrored"` (`tf.distribute.MirroredStrategy`, the GPUs of this machine) or
  `"multiworker"` (`tf.distribute.MultiWorkerMirroredStrategy`, the cluster in `TF_CONFIG`).
  The anchor variables are created with `aggregation="mean"` (their step counter
  `"only_first_replica"`), so every replica holds the same anchor.
- JAX: `"data_parallel"` (`keras.distribution.DataParallel` over all devices). With
  `"multiworker"`, `keras.distribution.initialize()` first joins the hosts named by the
  JAX coordinator variables, then DataParallel spans all their devices. The variables are
  replicated and the step is one SPMD program, so anchors agree by construction.
- PyTorch: none; `keras.distribution` has no PyTorch support in Keras 3.15.
- `"auto"`: mirrored on TensorFlow, data_parallel on JAX. `"none"`: nothing.

Why a context rather than a flag on `build_model`: TensorFlow needs the variables created
inside the strategy's scope, and JAX needs the distribution set before the variables exist
(else "Received incompatible devices for jitted computation") and still set while `fit`
shards the batches.
"""

import contextlib

DISTRIBUTE_CHOICES = ("none", "auto", "mirrored", "multiworker", "data_parallel")
_ENGINES = {"tensorflow": ("mirrored", "multiworker"), "jax": ("data_parallel", "multiworker")}


@contextlib.contextmanager
def distributed(kind="none", devices=None):
    """Context for multi-device training; yields the strategy / distribution (None for "none").

    `devices`: the devices to use (TensorFlow device strings, JAX devices); all by default.
    """
    if kind not in DISTRIBUTE_CHOICES:
        raise ValueError(f"unknown distribution {kind!r}: choose one of {', '.join(DISTRIBUTE_CHOICES)}")
    if kind == "none":
        yield None
        return
    import keras  # here, not at import: the CLI reads DISTRIBUTE_CHOICES without loading Keras

    backend = keras.backend.backend()
    if backend not in _ENGINES:
        raise ValueError(
            f"multi-device training is not available on the {backend} backend (keras.distribution covers JAX; "
            "tf.distribute covers TensorFlow): set KERAS_BACKEND=jax or tensorflow, or use --distribute none"
        )
    if kind == "auto":
        kind = _ENGINES[backend][0]
    if kind not in _ENGINES[backend]:
        raise ValueError(
            f"--distribute {kind} is not a {backend} engine: use {' or '.join(_ENGINES[backend])} on {backend}"
        )
    if backend == "tensorflow":
        import tensorflow as tf

        if kind == "mirrored":
            strategy = tf.distribute.MirroredStrategy(devices)
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            yield strategy
        return
    if kind == "multiworker":
        keras.distribution.initialize()
    distribution = keras.distribution.DataParallel(devices=devices)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield distribution
    finally:
        keras.distribution.set_distribution(previous)


def replica_count(engine):
    """How many replicas a value yielded by `distributed` trains on (1 for None)."""
    if engine is None:
        return 1
    if hasattr(engine, "num_replicas_in_sync"):
        return int(engine.num_replicas_in_sync)
    return int(engine.device_mesh.devices.size)
