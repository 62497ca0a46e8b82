"""Runs one training check on the backend named by KERAS_BACKEND and prints one JSON line.

Keras fixes its backend at import, so `test_backends.py` starts this file once per backend,
running all that backend's checks in one process (the first EfficientNet build and each
compile are the slow parts on JAX, so they are paid once):

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/backend_worker.py OUT_DIR ema save bfloat16 distribute

The checks only measure; the tests hold the assertions. A check that raises is reported
as {"error": "..."} and the others still run. "distribute" goes last: on JAX it sets a
global distribution.
"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before TensorFlow starts: two logical CPU devices for MirroredStrategy.
if __name__ == "__main__" and os.environ.get("KERAS_BACKEND") == "tensorflow" and "distribute" in sys.argv[2:]:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import batch, tiny_model, toy_model, values  # noqa: E402

DECAY = 0.9
_TRAINED = {}  # the "branch" model trained by check_ema, reused by check_save (one compile less)


def _max_equation_error(pairs, online_before, anchor_before, decay):
    """Largest |anchor_after - (m * anchor_before + (1 - m) * online_after)| over all pairs."""
    online_after = values([o for o, _ in pairs])
    anchor_after = values([a for _, a in pairs])
    errors = [
        float(np.max(np.abs(new_a - (decay * old_a + (1 - decay) * new_o))))
        for old_a, new_a, new_o in zip(anchor_before, anchor_after, online_after)
    ]
    moved = sum(not np.array_equal(o, n) for o, n in zip(online_before, online_after))
    return max(errors), moved, online_after, anchor_after


def check_ema(out_dir):
    """One `fit` step per mode: the EMA equation; then `fit` for 2 epochs: the counter advances."""
    report = {}
    x, y = batch(n=16, seed=3)
    for mode in ("branch", "inplace"):
        keras.utils.set_random_seed(0)
        model = tiny_model(mode, anchor_decay=DECAY, anchor_warmup=False)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")
        pairs = model.anchor_pairs()
        rng = np.random.default_rng(1)
        for _, anchor in pairs:  # move the anchor away from the online weights first
            anchor.assign(values([anchor])[0] + rng.normal(0, 0.01, anchor.shape).astype("float32"))
        online_before = values([o for o, _ in pairs])
        anchor_before = values([a for _, a in pairs])
        # One step through fit: on JAX this is the path that purges model variables.
        model.fit(x[:8], y[:8], batch_size=8, epochs=1, shuffle=False, verbose=0)
        error, moved, online_after, anchor_after = _max_equation_error(pairs, online_before, anchor_before, DECAY)
        step = model.anchor_layers[0].step
        result = {"pairs": len(pairs), "online_variables_moved": moved, "step_after_one": int(values([step])[0])}
        if mode == "inplace":
            # The online weights were overwritten by the anchor, so the equation's right-hand
            # side is no longer observable; the write itself is what is checked.
            result["inplace_online_minus_anchor"] = max(
                float(np.max(np.abs(o - a))) for o, a in zip(online_after, anchor_after)
            )
        else:
            result["equation_max_error"] = error
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        result["fit_losses"] = [float(v) for v in history.history["loss"]]
        result["step_after_fit"] = int(values([step])[0])
        result["optimizer_iterations"] = int(values([model.optimizer.iterations])[0])
        result["anchor_changed_by_fit"] = sum(
            not np.array_equal(before, after) for before, after in zip(anchor_after, values([a for _, a in pairs]))
        )
        report[mode] = result
        _TRAINED[mode] = model
    return report


def check_save(out_dir):
    """Save a trained "branch" model and write its predictions on a fixed batch."""
    import keras_mamsf as mamsf

    model = _TRAINED.get("branch")
    if model is None:
        keras.utils.set_random_seed(0)
        model = tiny_model("branch")
        model.compile(optimizer="adam", loss="binary_crossentropy")
        x, y = batch(n=16, seed=5)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = os.path.join(out_dir, f"trained_on_{keras.backend.backend()}.keras")
    mamsf.save_model(model, path)
    probe, _ = batch(n=4, seed=6)
    np.save(os.path.join(out_dir, "probe.npy"), probe)
    np.save(os.path.join(out_dir, "predictions.npy"), keras.ops.convert_to_numpy(model.predict(probe, verbose=0)))
    return {"model": path, "anchor_step": int(values([model.anchor_layers[0].step])[0])}


def check_bfloat16(out_dir, steps=20):
    """`mixed_bfloat16` for `steps` optimizer steps: every loss and weight stays finite."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = tiny_model("branch")
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="binary_crossentropy")
    x, y = batch(n=4 * steps, seed=7)
    per_batch = _LossPerBatch()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[per_batch])
    return {
        "policy": model.dtype_policy.name,
        "compute_dtype": model.get_layer("fusion").compute_dtype,
        "losses": per_batch.losses,
        "all_weights_finite": all(bool(np.all(np.isfinite(v))) for v in values(model.weights) if v.dtype.kind == "f"),
        "anchor_step": int(values([model.anchor_layers[0].step])[0]),
        "optimizer_iterations": int(values([model.optimizer.iterations])[0]),
    }


def check_accumulate(out_dir):
    """`gradient_accumulation_steps=2`: the anchor steps once per real update, in
    `train_on_batch` and in `fit`."""
    keras.utils.set_random_seed(0)
    model = toy_model("branch", decay=0.5, warmup=False)
    model.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), loss="binary_crossentropy")
    x, y = batch(n=8, seed=4, size=8)
    anchor_steps = []
    for _ in range(4):
        model.train_on_batch(x[:4], y[:4])
        anchor_steps.append(int(values([model.anchor_layers[0].step])[0]))
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)  # 4 micro-steps: 2 more updates
    return {
        "anchor_steps_per_batch": anchor_steps,
        "anchor_step_after_fit": int(values([model.anchor_layers[0].step])[0]),
        "optimizer_iterations_after_fit": int(values([model.optimizer.iterations])[0]),
    }


def check_float16_skip(out_dir):
    """A float16 step that overflows (loss scale 2**60) changes neither weights nor anchor;
    once the scale is sane the next step updates both."""
    keras.utils.set_random_seed(0)
    model = toy_model("branch", dtype_policy="mixed_float16", decay=0.5, warmup=False)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), initial_scale=2.0**60)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    x, y = batch(n=4, seed=8, size=8)
    trainable, anchors = model.trainable_variables, [a for _, a in model.anchor_pairs()]
    before = values(trainable) + values(anchors)
    model.train_on_batch(x, y)
    after_skip = values(trainable) + values(anchors)
    skipped = {
        "iterations": int(values([model.optimizer.iterations])[0]),
        "anchor_step": int(values([model.anchor_layers[0].step])[0]),
        "scale": float(values([model.optimizer.dynamic_scale])[0]),
        "changed_variables": sum(not np.array_equal(b, a) for b, a in zip(before, after_skip)),
    }
    model.optimizer.dynamic_scale.assign(2.0**10)
    model.train_on_batch(x, y)
    anchor_after = values(anchors)
    return {
        "skipped": skipped,
        "iterations_after_real_step": int(values([model.optimizer.iterations])[0]),
        "anchor_step_after_real_step": int(values([model.anchor_layers[0].step])[0]),
        "anchors_changed_by_real_step": sum(
            not np.array_equal(b, a) for b, a in zip(after_skip[len(trainable):], anchor_after)
        ),
        "variables": len(before),
    }


class _LossPerBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        # Keras reports the running mean over the epoch; undo it to get each batch's own loss.
        self.losses.append(float(logs["loss"]) * (batch + 1) - sum(self.losses))


def check_distribute(out_dir, epochs=3):
    """The same training on one device and on 2 replicas (same global batch and seed)."""
    from keras_mamsf.training import distributed, replica_count

    backend = keras.backend.backend()
    x, y = batch(n=128, seed=9)
    single_losses, _ = _train_for_distribution(x, y, epochs)
    devices = ["/cpu:0", "/cpu:1"] if backend == "tensorflow" else None  # JAX: all (2 forced) host devices
    with distributed("auto", devices=devices) as engine:
        replicated_losses, model = _train_for_distribution(x, y, epochs)
        replicas = replica_count(engine)
    disagreement, copies = _replica_disagreement(model)
    return {
        "backend": backend,
        "replicas": replicas,
        "single_losses": single_losses,
        "replicated_losses": replicated_losses,
        "anchor_copies_per_variable": copies,
        "anchor_replica_max_difference": disagreement,
        "anchor_variables_checked": len(model.anchor_layers[0].anchor_variables),
        "anchor_step": int(values([model.anchor_layers[0].step])[0]),
    }


def _train_for_distribution(x, y, epochs):
    keras.utils.set_random_seed(0)
    model = tiny_model("branch", anchor_decay=0.9)
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return [float(v) for v in history.history["loss"]], model


def _replica_disagreement(model):
    """Largest difference between the replica copies of each anchor variable (BN statistics included)."""
    worst, copies = 0.0, set()
    for variable in model.anchor_layers[0].anchor_variables:
        replicas = _replica_values(variable)
        copies.add(len(replicas))
        for other in replicas[1:]:
            worst = max(worst, float(np.max(np.abs(other.astype("float64") - replicas[0].astype("float64")))))
    return worst, sorted(copies)


def _replica_values(variable):
    if keras.backend.backend() == "tensorflow":
        return [np.array(v.numpy()) for v in variable.value.values]
    return [np.array(shard.data) for shard in variable.value.addressable_shards]


def check_backend_note(out_dir):
    """What `mamsf train` logs about this backend on this machine (a CPU here), and the policy "auto" picks."""
    from keras_mamsf.utils import environment

    return {"platform": environment.backend_platform(), "note": environment.slow_backend_note(),
            "auto_policy": environment.auto_dtype_policy(), "accelerators": environment.backend_accelerators(),
            "protocol_accelerators": environment.describe()["hardware"]["accelerators"]}


CHECKS = {
    "backend_note": check_backend_note,
    "ema": check_ema,
    "save": check_save,
    "bfloat16": check_bfloat16,
    "accumulate": check_accumulate,
    "float16_skip": check_float16_skip,
    "distribute": check_distribute,
}


def main(out_dir, *names):
    report = {"backend": keras.backend.backend()}
    for name in names:
        started = time.perf_counter()
        try:
            report[name] = CHECKS[name](out_dir)
            report[name]["seconds"] = round(time.perf_counter() - started, 1)
        except Exception as error:  # report it; the test that reads this check fails with the message
            report[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        finally:
            keras.config.set_dtype_policy("float32")
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
