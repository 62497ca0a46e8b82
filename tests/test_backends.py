"""Issue 3: training on TensorFlow, JAX and PyTorch; multi-device; JAX -> TensorFlow round trip.

Keras picks its backend once per process, so each backend's checks run in one child process
(`backend_worker.py`); this module asserts on the JSON it prints. The TensorFlow child uses 2
logical CPU devices (MirroredStrategy) and the JAX child 2 forced host devices (DataParallel).
"""

import os

import numpy as np
import pytest

import keras_mamsf as mamsf

from conftest import BACKEND_CHECKS, values, worker_report
from harness import assert_close

# These wait for a worker process that trains and converts for minutes.
pytestmark = pytest.mark.slow

EQUATION_TOLERANCE = 1e-6


def worker_check(backend, name):
    """One check's result from `backend`'s worker process (started by conftest at collection)."""
    report = worker_report(backend)
    assert report["backend"] == backend
    result = report[name]
    assert "error" not in result, f"{backend} {name}: {result.get('traceback', result['error'])}"
    return result


def backends_running(name):
    return [backend for backend, names in BACKEND_CHECKS.items() if name in names]


@pytest.mark.parametrize("backend", backends_running("backend_note"))
def test_training_on_a_cpu_names_tensorflow_as_the_fast_backend(backend):
    result = worker_check(backend, "backend_note")
    assert result["platform"] == "cpu"
    assert result["auto_policy"] == "float32"
    assert result["accelerators"] == [] and result["protocol_accelerators"] == ["none (CPU)"]
    if backend == "tensorflow":
        assert result["note"] is None
    else:  # bench/train_throughput.py --backends: JAX and PyTorch train B0 slower on a CPU
        assert result["note"].startswith(f"note: {backend} on a CPU trains EfficientNet slower than TensorFlow")
        assert "unset KERAS_BACKEND" in result["note"]


@pytest.mark.parametrize("backend", backends_running("ema"))
def test_one_step_ema_equation_and_fit_advance_the_anchor(backend):
    result = worker_check(backend, "ema")
    for mode in ("branch", "inplace"):
        mode_result = result[mode]
        assert mode_result["pairs"] == 24
        assert mode_result["online_variables_moved"] == 24, mode  # BN statistics moved too
        assert mode_result["step_after_one"] == 1
        # 2 epochs of 2 steps after the single step: the counter follows the real updates.
        assert mode_result["optimizer_iterations"] == 5
        assert mode_result["step_after_fit"] == 5, (backend, mode)
        assert mode_result["anchor_changed_by_fit"] == 24
        assert all(np.isfinite(mode_result["fit_losses"]))
    assert result["branch"]["equation_max_error"] <= EQUATION_TOLERANCE, backend
    assert result["inplace"]["inplace_online_minus_anchor"] == 0.0, backend


@pytest.mark.parametrize("backend", backends_running("accumulate"))
def test_gradient_accumulation_advances_the_anchor_once_per_real_update(backend):
    result = worker_check(backend, "accumulate")
    assert result["anchor_steps_per_batch"] == [0, 1, 1, 2], backend
    # fit: 4 more micro-steps of batch 2 = 2 more updates.
    assert result["anchor_step_after_fit"] == result["optimizer_iterations_after_fit"] == 4, backend


@pytest.mark.parametrize("backend", backends_running("float16_skip"))
def test_float16_step_skipped_by_the_loss_scaler_changes_neither_weights_nor_anchor(backend):
    result = worker_check(backend, "float16_skip")
    assert result["skipped"] == {"iterations": 0, "anchor_step": 0, "scale": 2.0**59, "changed_variables": 0}, backend
    assert result["iterations_after_real_step"] == result["anchor_step_after_real_step"] == 1
    assert result["anchors_changed_by_real_step"] == 6  # conv kernel + bias, BN gamma, beta, mean, variance


def test_mixed_bfloat16_on_jax_stays_finite_for_20_steps():
    result = worker_check("jax", "bfloat16")
    assert result["policy"] == "mixed_bfloat16" and result["compute_dtype"] == "bfloat16"
    assert len(result["losses"]) == 20 and all(np.isfinite(result["losses"]))
    assert result["all_weights_finite"]
    assert result["anchor_step"] == result["optimizer_iterations"] == 20


@pytest.mark.parametrize("backend", backends_running("distribute"))
def test_two_replicas_keep_anchors_identical_and_match_single_device_loss(backend):
    result = worker_check(backend, "distribute")
    assert result["replicas"] == 2
    # Every anchor variable (the BN moving-statistics anchors included) was read per replica.
    assert result["anchor_copies_per_variable"] == [2]
    assert result["anchor_variables_checked"] == 25  # 24 anchors + the step counter
    assert result["anchor_replica_max_difference"] == 0.0
    assert result["anchor_step"] == 12  # 3 epochs x 4 global batches
    single, replicated = result["single_losses"][-1], result["replicated_losses"][-1]
    assert abs(replicated - single) <= 0.05 * single, (backend, result["single_losses"], result["replicated_losses"])


@pytest.mark.parametrize("backend", backends_running("save"))
def test_model_trained_on_another_backend_loads_and_predicts_the_same_on_tensorflow(backend, tmp_path):
    result = worker_check(backend, "save")
    out_dir = os.path.dirname(result["model"])
    model = mamsf.load_model(result["model"])
    assert int(values([model.anchor_layers[0].step])[0]) == result["anchor_step"] > 0
    probe = np.load(os.path.join(out_dir, "probe.npy"))
    expected = np.load(os.path.join(out_dir, "predictions.npy"))
    assert_close(model.predict(probe, verbose=0), expected, atol=1e-5)  # another backend's kernels
    if backend == "jax":  # ... and the TensorFlow backend exports it (once: tracing the export is slow)
        import tensorflow as tf

        model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
        reloaded = tf.saved_model.load(str(tmp_path / "saved_model"))  # keep it referenced: it owns the variables
        served = reloaded.serve(tf.constant(probe))
        assert_close(np.asarray(served), expected, atol=1e-5)  # another backend's kernels
