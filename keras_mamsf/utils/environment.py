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
    accelerators = backend_accelerators()
    hardware = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(), "accelerators": accelerators or ["none (CPU)"], "system": platform.system()}
    return {"hardware": hardware, "software": software}


def backend_accelerators():
    """The accelerators the Keras backend of this process runs its ops on, as "platform:name" ("gpu:NVIDIA
    H100 80GB HBM3"); [] on a CPU. Asked of the backend, not of TensorFlow: JAX or PyTorch on a GPU next to
    a CPU-only TensorFlow (the usual install) is on a GPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{getattr(d, 'device_kind', d.platform)}" for d in jax.devices() if d.platform != "cpu"]
    if backend == "torch":
        import torch

        return [f"gpu:{torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [f"{d.device_type.lower()}:{d.name}" for d in tf.config.list_physical_devices() if d.device_type != "CPU"]


def backend_platform():
    """"cpu", "gpu" or "tpu": where the Keras backend of this process runs its ops."""
    accelerators = backend_accelerators()
    return accelerators[0].split(":", 1)[0] if accelerators else "cpu"


def auto_dtype_policy(platform=None):
    """The dtype policy `dtype_policy = "auto"` means on `platform` (default: `backend_platform()`):
    "mixed_bfloat16" on a GPU or TPU, "float32" on a CPU (bfloat16 on a CPU measured 0.67x float32's
    training speed; docs/benchmarks.md)."""
    platform = backend_platform() if platform is None else platform
    return "float32" if platform == "cpu" else "mixed_bfloat16"


def slow_backend_note():
    """A line for a training log when the backend is a slow choice for this machine, else None: on a CPU,
    JAX (XLA's CPU convolutions) and PyTorch (Keras' eager torch path) train EfficientNet slower than
    TensorFlow (measured: 0.12x and 0.76x its images/s for B0 at 128 px on 2 cores; docs/benchmarks.md,
    `bench/train_throughput.py --backends`)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow" or backend_platform() != "cpu":
        return None
    return (f"note: {backend} on a CPU trains EfficientNet slower than TensorFlow "
            "(docs/benchmarks.md); for CPU training unset KERAS_BACKEND (TensorFlow is the default)")
