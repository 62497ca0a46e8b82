"""The artifact formats: the one table of their names, files, runners and parity gates.

    fmt = artifact_format("exports/model_int8.tflite")   # TFLITE
    runner = load_runner("exports/model_int8.tflite")    # the format's runner, loaded

Every other module names a format through this table (`FORMATS`, or its entries `KERAS`,
`SAVEDMODEL`, `TFLITE`, `ONNX`). Adding a format is one entry here, its runner in `runners.py`,
and its converter in `keras_mamsf.export.exporter.CONVERTERS` (keyed by the entry: export stands
above this floor, so the table cannot name export's code).
"""

import dataclasses
import os

from keras_mamsf.inference import runners


@dataclasses.dataclass(frozen=True)
class ArtifactFormat:
    """One format.

    Attributes:
        name: how users and manifests spell it (`--format`, `manifest.json`'s `format`).
        suffixes: file name endings that select it; empty for a folder format (SavedModel).
        runner: the `runners` class that runs it in its own runtime.
        file_name: the artifact's name in an export folder; `{variant}` for TFLite's variants.
        gate: the parity gate kind of its artifacts ("exact": max |dp|), or None where the variant
            decides (TFLite: float32 exact, quantized ones judged on ranking).
        threads: whether its runtime takes a CPU thread count.
        exported: whether `mamsf export` writes it (a `.keras` file is the source, not an export).
    """

    name: str
    suffixes: tuple
    runner: type
    file_name: str = ""
    gate: str | None = "exact"
    threads: bool = False
    exported: bool = True

    def artifact_name(self, variant=None):
        return self.file_name.format(variant=variant)

    def __str__(self):
        return self.name


KERAS = ArtifactFormat("keras", (".keras", ".h5", ".hdf5"), runners.KerasRunner, exported=False)
SAVEDMODEL = ArtifactFormat("savedmodel", (), runners.SavedModelRunner, file_name="savedmodel")
TFLITE = ArtifactFormat("tflite", (".tflite",), runners.LiteRTRunner, file_name="model_{variant}.tflite", gate=None,
                        threads=True)
ONNX = ArtifactFormat("onnx", (".onnx",), runners.OnnxRunner, file_name="model.onnx", threads=True)

FORMATS = {fmt.name: fmt for fmt in (KERAS, SAVEDMODEL, TFLITE, ONNX)}
EXPORT_FORMATS = tuple(fmt for fmt in FORMATS.values() if fmt.exported)


def export_format(name):
    """The exported format called `name`; a one-line error naming the choices otherwise."""
    fmt = FORMATS.get(str(name).strip().lower())
    if fmt is None or not fmt.exported:
        raise ValueError(f"unknown format {name!r}; choose from {','.join(f.name for f in EXPORT_FORMATS)}")
    return fmt


def failed_name(name):
    """`model_int8.tflite` -> `model_int8.FAILED.tflite`; `savedmodel` -> `savedmodel.FAILED`: where export
    keeps an artifact that failed its gate, so that nothing picks it up by its normal name."""
    stem, extension = os.path.splitext(name)
    return f"{stem}.FAILED{extension}"


def artifact_format(path):
    """The format of the artifact at `path` (a file by its suffix, a folder holding `saved_model.pb`)."""
    path = os.fspath(path)
    set_aside = failed_name(path.rstrip(os.sep))
    if not os.path.exists(path) and os.path.exists(set_aside):
        raise FileNotFoundError(f"{path}: export renamed it {os.path.basename(set_aside)}: it failed its parity gate "
                                "(manifest.json says why); pass that name to use it anyway, or export again")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SAVEDMODEL
        raise ValueError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
    for fmt in FORMATS.values():
        if fmt.suffixes and path.endswith(fmt.suffixes):
            # models.io.load_model checks a .keras file itself (and refuses legacy HDF5)
            if fmt is not KERAS and not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no such model file")
            return fmt
    raise ValueError(f"{path}: not a model this library runs (.keras, a SavedModel folder, .tflite or .onnx)")


def load_runner(path, num_threads=None):
    """The runner of the artifact at `path`: `runner.input_shape` (H, W, C) and
    `runner.predict(images float32 NHWC 0..255) -> {"probs", "logits"}`."""
    fmt = artifact_format(path)
    return fmt.runner(os.fspath(path), **({"num_threads": num_threads} if fmt.threads else {}))
