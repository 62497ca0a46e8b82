"""What a run ran on: hardware and software versions, for the protocol of a report."""

import os
import platform

PACKAGES = ("keras", "tensorflow", "jax", "torch", "numpy", "scikit-learn", "scipy", "keras-mamsf")


def describe():
    """`{"hardware": {...}, "software": {...}}` of this process (installed packages only)."""
    from importlib import metadata

    import keras

    software = {"python": platform.python_version(), "backend": keras.backend.backend()}
    for package in PACKAGES:
        try:
            software[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    accelerators = []
    try:
        import tensorflow as tf

        accelerators = [device.name for device in tf.config.list_physical_devices() if device.device_type != "CPU"]
    except ImportError:
        pass
    hardware = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "accelerators": accelerators or ["none (CPU)"], "system": platform.system()}
    return {"hardware": hardware, "software": software}


def backend_platform():
    """"cpu", "gpu" or "tpu": where the Keras backend of this process runs its ops."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    kinds = {device.device_type for device in tf.config.list_physical_devices()}
    return "tpu" if "TPU" in kinds else ("gpu" if "GPU" in kinds else "cpu")


def slow_backend_note():
    """A line for a training log when the backend is a slow choice for this machine, else None: on a CPU,
    JAX (XLA's CPU convolutions) and PyTorch (Keras' eager torch path) train EfficientNet slower than
    TensorFlow (measured: 0.12x and 0.76x its images/s for B0 at 128 px on 2 cores; README "Benchmarks",
    `bench/train_throughput.py --backends`)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow" or backend_platform() != "cpu":
        return None
    return (f"note: {backend} on a CPU trains EfficientNet slower than TensorFlow (README "
            "\"Benchmarks\"); for CPU training unset KERAS_BACKEND (TensorFlow is the default)")
