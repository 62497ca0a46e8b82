import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_mamsf as mamsf  # noqa: E402

IMAGE = 32
CLASSES = 3


def tiny_model(anchor="branch", **kwargs):
    """The real MAMSF model at test size: `build_model` on the four-stage `test_efficientnet`
    backbone (B0's final block on a short trunk, a third of B0's graph-building time); pass
    `backbone=` for B0 itself."""
    options = dict(input_shape=(IMAGE, IMAGE, 3), num_classes=CLASSES, anchor=anchor, fusion_filters=8, dropout=0.0,
                   backbone="test_efficientnet")
    options.update(kwargs)
    return mamsf.build_model(**options)


def toy_model(anchor="branch", dtype_policy=None, classes=CLASSES, **anchor_options):
    """A small hand-built `MomentumAnchoredModel` (conv stem, anchored conv-BN block, head named
    like build_model's): the anchor mechanics without EfficientNet's build and compile cost.
    Input (8, 8, 3)."""
    policy = keras.dtype_policies.get(dtype_policy or keras.config.dtype_policy())
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling", dtype=policy)(image)  # batch() draws 0..255 pixels
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv", dtype=policy)(x)
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3, padding="same", name="top_conv", dtype=policy),
         keras.layers.BatchNormalization(name="top_bn", dtype=policy)],
        name="final_block",
    )
    x = mamsf.MomentumAnchor(block, mode=anchor, name="momentum_anchor", dtype=policy, **anchor_options)(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=policy)(x)
    logits = keras.layers.Dense(classes, name="logits", dtype="float32")(x)
    probs = keras.layers.Activation("sigmoid", name="probs", dtype="float32")(logits)
    return mamsf.MomentumAnchoredModel(image, probs, name=f"toy_{anchor}", dtype=policy)


def batch(n=8, seed=0, size=IMAGE, classes=CLASSES, channels=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, size, size, channels)).astype("float32")
    y = (rng.random((n, classes)) < 0.4).astype("float32")
    return x, y


def set_normalization_statistics(layer, mean, variance):
    """A `keras.layers.Normalization`'s per-channel statistics, as adapting or loading it sets them
    (the layer computes from copies its `finalize_state` makes of the variables)."""
    layer.adapt_mean.assign(np.asarray(mean, "float32"))
    layer.adapt_variance.assign(np.asarray(variance, "float32"))
    layer.finalize_state()


def values(variables):
    """numpy copies of variables (or of computed values such as `optimizer.iterations` under
    gradient accumulation)."""
    return [np.array(keras.ops.convert_to_numpy(getattr(v, "value", v))) for v in variables]


def copy_dropout_seeds(source, target):
    """Give `target` the dropout RNG state of `source` (seed states are not weights)."""
    seeds = [[v for v in m.variables if "seed_generator_state" in v.path] for m in (source, target)]
    for src, dst in zip(*seeds, strict=True):
        dst.assign(src.numpy())


def binary_case(rng, n, prevalence, shift=1.0, decimals=None):
    """Labels with at least one positive and one negative, and scores shifted up for positives
    (rounded to `decimals` for ties): the random cases of the evaluation tests."""
    y = rng.random(n) < prevalence
    y[:2] = [True, False]
    score = rng.normal(size=n) + shift * y
    return y, (score if decimals is None else np.round(score, decimals))


@pytest.fixture
def float32_policy():
    """Restores the global dtype policy after a test that changes it."""
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


# -- other backends, in child processes ------------------------------------------------
# Keras fixes its backend per process, so each backend's checks run in one child process
# (tests/backend_worker.py). They start in the background as soon as test_backends.py is
# collected: their XLA compiles and the TensorFlow tests' graph tracing are both mostly
# single-threaded, so on 2 cores they largely overlap.
BACKEND_CHECKS = {
    "tensorflow": ["backend_note", "ema", "distribute"],
    "jax": ["backend_note", "ema", "save", "bfloat16", "accumulate", "float16_skip", "distribute"],
    "torch": ["backend_note", "ema", "save", "accumulate", "float16_skip"],
}
WORKER_TIMEOUT_S = 1200
_workers = {}
_worker_root = []  # the temporary folder of the workers' outputs, removed at the end


# Tests that wait for a worker run last, so the rest of the suite overlaps with the workers.
_WAITING_FILES = {"test_export.py": 1, "test_evaluate_model.py": 1, "test_runtime_install.py": 1, "test_backends.py": 2}
EXPORT_WORKER_TESTS = {"test_export.py", "test_evaluate_model.py", "test_runtime_install.py"}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: _WAITING_FILES.get(item.path.name, 0))


def pytest_collection_finish(session):
    files = {item.path.name for item in session.items}
    root = None
    if files & set(_WAITING_FILES):
        root = tempfile.mkdtemp(prefix="mamsf_workers_")
        _worker_root.append(root)
    if "test_backends.py" in files:
        for backend in BACKEND_CHECKS:
            _workers[backend] = _launch_worker(backend, os.path.join(root, backend))
    if files & EXPORT_WORKER_TESTS:
        # Export conversions (tracing, the TFLite / ONNX converters) are mostly single-threaded too.
        _workers["export"] = _launch_worker("tensorflow", os.path.join(root, "export"), script="export_worker.py",
                                            args=[])


def pytest_sessionfinish(session):
    import shutil

    for process, _ in _workers.values():
        if process.poll() is None:
            process.kill()
        process.wait()
    for root in _worker_root:  # the exports alone are ~100 MB
        shutil.rmtree(root, ignore_errors=True)


def _launch_worker(backend, out_dir, script="backend_worker.py", args=None):
    os.makedirs(out_dir)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "jax":
        # Two CPU "devices" for DataParallel; optimization level 0 cuts XLA's CPU compile
        # time and changes none of the figures the checks look at.
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    log = open(os.path.join(out_dir, "log.txt"), "w")
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    command = [sys.executable, worker, out_dir, *(BACKEND_CHECKS[backend] if args is None else args)]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log.name


def worker_report(backend):
    """The JSON report of a worker ("tensorflow", "jax", "torch", "export"; waits for it); the
    test fails with the worker's log tail."""
    process, log_path = _workers[backend]
    process.wait(timeout=WORKER_TIMEOUT_S)
    with open(log_path) as log:
        output = log.read()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, f"{backend} worker failed:\n{output[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])
