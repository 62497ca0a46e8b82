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
