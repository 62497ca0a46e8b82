"""What the two installs hold, for one-line errors: the bedside runtime (`pip install keras-mamsf`)
runs `mamsf predict` on TFLite files; everything else needs `pip install 'keras-mamsf[train]'`."""

TRAIN_INSTALL = "pip install 'keras-mamsf[train]'"
ONNX_INSTALL = "pip install 'keras-mamsf[onnx]'"
# Import names of the packages only the [train] install has.
TRAIN_PACKAGES = ("keras", "tensorflow", "sklearn", "scipy", "matplotlib", "yaml", "tensorflow_datasets", "tf2onnx",
                  "onnx", "tensorboard", "jax", "torch")


def missing_install(error):
    """One line naming the install an `ImportError` calls for, or None when it is not a missing package
    of ours (then it is a real error and propagates)."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    if name == "onnxruntime":
        return f"running .onnx files needs onnxruntime, which this install lacks: {ONNX_INSTALL}"
    if name in ("jax", "torch"):
        return f"the {name} backend is not installed: pip install 'keras-mamsf[train,{name}]'"
    if name in TRAIN_PACKAGES:
        return f"this needs the full library ({name} is not installed; the runtime install has none): {TRAIN_INSTALL}"
    return None
