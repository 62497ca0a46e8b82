"""The predictions file: the one exchange format of `evaluate`, `compare`, `train` and other tools.

An NPZ with
    y_true       (N, C) 0/1          the reference labels
    y_score      (N, C) float        the model's scores (probabilities or any monotone score)
    patient_id   (N,)   optional     enables patient-level resampling
    image_index  (N,)   optional     image names; `compare` checks that two files cover the same images
    labels       (C,)   optional     class names (default: ChestX-ray14's 14 labels when C == 14)

Written atomically; read with `allow_pickle=False` (a predictions file cannot carry code). Every
check fails with one line naming the file and what to do.
"""

import dataclasses
import os

import numpy as np

from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.utils import atomic_path


class PredictionsError(ValueError):
    """A predictions file or array that cannot be evaluated; one line."""


@dataclasses.dataclass
class Predictions:
    """Labels and scores of N images over C classes, with optional patient ids and image names.

    Example:
        predictions = Predictions(y_true, y_score, labels=mamsf.CHESTXRAY14_LABELS, patient_id=patients)
        predictions.save("runs/a/predictions.npz")
        same = Predictions.load("runs/a/predictions.npz")
    """

    y_true: np.ndarray
    y_score: np.ndarray
    labels: tuple = None
    patient_id: np.ndarray = None
    image_index: np.ndarray = None
    source: str = "arrays"

    def __post_init__(self):
        where = self.source
        y_true = np.asarray(self.y_true)
        y_score = np.asarray(self.y_score)
        if y_true.ndim == 1:
            y_true = y_true[:, None]
        if y_score.ndim == 1:
            y_score = y_score[:, None]
        if y_true.ndim != 2 or y_true.shape != y_score.shape:
            raise PredictionsError(f"{where}: y_true {y_true.shape} and y_score {y_score.shape} must have the same "
                                   "shape (images, classes)")
        if not len(y_true):
            raise PredictionsError(f"{where}: no images")
        if not np.issubdtype(y_score.dtype, np.number) or not np.all(np.isfinite(y_score)):
            bad = np.argwhere(~np.isfinite(y_score.astype("float64")))[0] if np.issubdtype(y_score.dtype,
                                                                                           np.number) else None
            detail = f" (first at image {bad[0]}, class {bad[1]})" if bad is not None else ""
            raise PredictionsError(f"{where}: y_score has NaN, infinite or non-numeric values{detail}; "
                                   "every score must be a finite number")
        if not np.issubdtype(y_true.dtype, np.number) or not np.all((y_true == 0) | (y_true == 1)):
            raise PredictionsError(f"{where}: y_true must hold only 0 and 1 (multi-label ground truth); "
                                   f"found {_first_other(y_true)}")
        classes = y_true.shape[1]
        labels = self.labels
        if labels is None:
            generic = [f"class_{i}" for i in range(classes)]
            labels = CHESTXRAY14_LABELS if classes == len(CHESTXRAY14_LABELS) else generic
        labels = tuple(str(label) for label in np.asarray(labels).reshape(-1))
        if len(labels) != classes or len(set(labels)) != classes:
            raise PredictionsError(f"{where}: {len(labels)} labels for {classes} score columns (or duplicate names)")
        for name in ("patient_id", "image_index"):
            values = getattr(self, name)
            if values is not None:
                values = np.asarray(values).reshape(-1)
                if len(values) != len(y_true):
                    raise PredictionsError(f"{where}: {name} has {len(values)} entries for {len(y_true)} images")
                setattr(self, name, values.astype(str) if values.dtype.kind in "OSU" else values)
        self.y_true = y_true.astype("int8")
        self.y_score = y_score.astype("float64")
        self.labels = labels

    @property
    def n_images(self):
        return len(self.y_true)

    @property
    def n_patients(self):
        return None if self.patient_id is None else int(len(np.unique(self.patient_id)))

    def save(self, path):
        arrays = {"y_true": self.y_true, "y_score": self.y_score,  # float64: reloads to the same figures
                  "labels": np.asarray(self.labels, dtype=str)}
        if self.patient_id is not None:
            arrays["patient_id"] = self.patient_id
        if self.image_index is not None:
            arrays["image_index"] = np.asarray(self.image_index, dtype=str)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # a file object: numpy would append ".npz" to a name
                np.savez_compressed(handle, **arrays)
        return os.fspath(path)

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        if os.path.isdir(path):
            raise PredictionsError(f"{path}: a folder, not a predictions file (.npz)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise PredictionsError(f"{path}: no such predictions file") from None
        except (ValueError, OSError) as error:
            # NumPy's own words invite loading pickled data unsafely: ours say what the file should be.
            reason = "it holds Python objects, not arrays" if "pickle" in str(error) else str(error).splitlines()[0]
            raise PredictionsError(f"{path}: not a predictions file (an NPZ of arrays y_true, y_score, ...; "
                                   f"{reason})") from None
        missing = [name for name in ("y_true", "y_score") if name not in arrays]
        if missing:
            raise PredictionsError(f"{path}: no {' / '.join(missing)} array "
                                   f"(has {', '.join(sorted(arrays)) or 'none'}); "
                                   "a predictions file needs y_true and y_score (images x classes)")
        return cls(arrays["y_true"], arrays["y_score"], labels=arrays.get("labels"),
                   patient_id=arrays.get("patient_id"), image_index=arrays.get("image_index"), source=path)


def check_same_images(a, b):
    """Raises PredictionsError naming the first difference unless `a` and `b` score the same
    images (image names when both have them, else count), labels and ground truth."""
    if a.labels != b.labels:
        first = next((i for i, (x, y) in enumerate(zip(a.labels, b.labels)) if x != y),
                     min(len(a.labels), len(b.labels)))
        raise PredictionsError(f"{b.source}: labels differ from {a.source} at column {first} "
                               f"({_at(a.labels, first)!r} vs {_at(b.labels, first)!r})")
    if a.n_images != b.n_images:
        raise PredictionsError(f"{b.source}: {b.n_images} images, {a.source} has {a.n_images}; compare needs the same "
                               f"images")
    if a.image_index is not None and b.image_index is not None:
        differ = np.flatnonzero(a.image_index != b.image_index)
        if len(differ):
            i = differ[0]
            raise PredictionsError(f"{b.source}: image {i} is {str(b.image_index[i])!r}, "
                                   f"{a.source} has {str(a.image_index[i])!r}; "
                                   "compare needs the same images in the same order")
    differ = np.argwhere(a.y_true != b.y_true)
    if len(differ):
        i, c = differ[0]
        raise PredictionsError(f"{b.source}: y_true differs from {a.source} at image {i}, class {a.labels[c]}; "
                               "compare needs the same ground truth")
    if a.patient_id is not None and b.patient_id is not None and np.any(a.patient_id != b.patient_id):
        i = np.flatnonzero(a.patient_id != b.patient_id)[0]
        raise PredictionsError(f"{b.source}: patient_id of image {i} differs from {a.source}")


def _at(sequence, index):
    return sequence[index] if index < len(sequence) else None


def _first_other(y_true):
    if not np.issubdtype(y_true.dtype, np.number):
        return f"dtype {y_true.dtype}"
    i, c = np.argwhere((y_true != 0) & (y_true != 1))[0]
    return f"{y_true[i, c]!r} at image {i}, class {c}"
