"""`DriftMonitor`: per-class feature drift of the online and the anchor block over training.

The review's falsification test: "the change in feature embeddings for minority classes over
training epochs, with and without the selective EMA". At the start, the monitor fixes a probe
set (up to `per_class` images per class, every class with positives, rarest first, seeded) and
takes the pooled features of both blocks (`model.feature_model()`). At each epoch's end, per
class c and block b (online, anchor):

- `drift_{b}_{c}`: cosine distance between the class centroid now and at the previous epoch's end
  (at the first epoch: the start);
- `drift_start_{b}_{c}`: cosine distance between the centroid now and at the start of training
  (both blocks share that reference: the anchor starts as a copy of the online block);
- `anchor_gap_{c}`: cosine distance between the online and the anchor centroid now;
- `separation_{b}_{c}`: Fisher ratio of class c against the rest of the probe along the
  direction joining their centroids, (m1 - m0)^2 / (v1 + v0) of the projections: how well a
  nearest-centroid rule tells the class apart, in the block's own feature space.

The values go into the Keras logs (so `History`, `CSVLogger` and `TensorBoard` get them), into
`drift.json` (scalars) and `drift_centroids.npz` (the centroids, so a resumed run continues
from the stored reference), and at the end into `drift.png`: the drift curves of both blocks per
class, minority classes first. For `anchor=None` the anchor values repeat the online ones.
"""

import io
import json
import math
import os

import keras
import numpy as np

BLOCKS = ("online", "anchor")


def select_probe(labels, per_class=32, seed=0):
    """Indices of the probe images: for each class with positives, rarest class first, up to
    `per_class` of its positives not chosen yet (seeded draw), then up to `per_class` images with
    no positive label (the rest that every class is told apart from). Sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = labels.sum(axis=0)
    chosen = set()
    for column in sorted(np.flatnonzero(counts > 0), key=lambda c: (counts[c], c)):
        have = sum(1 for i in chosen if labels[i, column])
        candidates = [i for i in np.flatnonzero(labels[:, column]) if i not in chosen]
        take = max(0, min(per_class - have, len(candidates)))
        chosen.update(int(i) for i in rng.choice(candidates, size=take, replace=False))
    empty = np.flatnonzero(labels.sum(axis=1) == 0)
    chosen.update(int(i) for i in rng.choice(empty, size=min(per_class, len(empty)), replace=False))
    return np.array(sorted(chosen), dtype="int64")


def cosine_distance(a, b):
    """1 - cos(a, b) of two vectors; NaN where either is zero or not finite."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if not math.isfinite(norm) or norm == 0.0:
        return float("nan")
    return float(1.0 - np.dot(a, b) / norm)


def fisher_separation(features, positive):
    """(m1 - m0)^2 / (v1 + v0) of the features projected on the line joining the two centroids;
    NaN with fewer than 2 images on either side or no spread at all."""
    positive = np.asarray(positive, dtype=bool)
    if positive.sum() < 2 or (~positive).sum() < 2:
        return float("nan")
    direction = features[positive].mean(axis=0) - features[~positive].mean(axis=0)
    norm = np.linalg.norm(direction)
    if norm == 0.0:
        return 0.0
    projection = features @ (direction / norm)
    spread = projection[positive].var() + projection[~positive].var()
    if spread == 0.0:
        return float("nan")
    return float((projection[positive].mean() - projection[~positive].mean()) ** 2 / spread)


class DriftMonitor(keras.callbacks.Callback):
    """Logs per-class feature drift of the online and the anchor block at every epoch's end.

    Args:
        images: the candidate probe images (N, H, W, C) as the model takes them, usually the
            validation split (or already a probe: `select_probe` and `per_class=None`).
        labels: their (N, classes) 0/1 labels.
        label_names: class names for the log keys (default "0", "1", ...).
        per_class: probe images per class (`select_probe`); None takes all `images`.
        seed: the probe draw's seed.
        class_counts: positives per class in the training data; orders classes rarest first
            in `drift.json` and the plot (default: the probe's own counts).
        out_dir: where `drift.json`, `drift_centroids.npz` and `drift.png` go (None: logs only).
        batch_size: feature extraction batch.

    Example:

    ```python
    monitor = DriftMonitor(val_images, val_labels, CHESTXRAY14_LABELS, per_class=32, out_dir="runs/a")
    model.fit(train_ds, epochs=10, callbacks=[monitor])
    monitor.history[-1]["online"]["Hernia"]["drift_start"]
    ```
    """

    def __init__(self, images, labels, label_names=None, per_class=32, seed=0, class_counts=None, out_dir=None,
                 batch_size=64):
        super().__init__()
        labels = np.asarray(labels)
        if len(images) != len(labels):
            raise ValueError(f"DriftMonitor: {len(images)} images but {len(labels)} label rows")
        index = np.arange(len(labels)) if per_class is None else select_probe(labels, per_class, seed)
        self.images = np.asarray(images)[index]
        self.labels = labels[index].astype(bool)
        self.label_names = [str(n) for n in (label_names or range(labels.shape[1]))]
        if len(self.label_names) != labels.shape[1]:
            raise ValueError(f"DriftMonitor: {len(self.label_names)} label names for {labels.shape[1]} label columns")
        counts = np.asarray(class_counts if class_counts is not None else self.labels.sum(axis=0))
        self.classes = [self.label_names[c] for c in sorted(np.flatnonzero(self.labels.sum(axis=0) > 0),
                                                              key=lambda c: (counts[c], c))]
        self.class_counts = {self.label_names[c]: int(counts[c]) for c in range(len(counts))}
        self.per_class, self.seed, self.batch_size = per_class, seed, batch_size
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.history = []  # one dict per finished epoch, as in drift.json
        self._start = None  # (blocks, classes, dim) centroids at the start
        self._centroids = {}  # epoch -> (blocks, classes, dim)

    # -- features ------------------------------------------------------------------
    def _features(self):
        outputs = self._feature_model.predict(self.images, batch_size=self.batch_size, verbose=0)
        return {block: np.asarray(outputs[block], dtype="float64") for block in BLOCKS}

    def _class_centroids(self, features):
        columns = [self.label_names.index(name) for name in self.classes]
        return np.stack([np.stack([features[block][self.labels[:, c]].mean(axis=0) for c in columns])
                         for block in BLOCKS])

    # -- callback ------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._feature_model = self.model.feature_model()
        self._mode = getattr(self.model, "anchor_mode", None)
        if not self._restore():
            self._start = self._class_centroids(self._features())
            self.history, self._centroids = [], {}

    def on_epoch_end(self, epoch, logs=None):
        features = self._features()
        now = self._class_centroids(features)
        previous = self._centroids.get(epoch - 1, self._start)
        record = {"epoch": epoch + 1, "online": {}, "anchor": {}, "anchor_gap": {}}
        for k, name in enumerate(self.classes):
            column = self.label_names.index(name)
            for b, block in enumerate(BLOCKS):
                record[block][name] = {
                    "drift": cosine_distance(now[b, k], previous[b, k]),
                    "drift_start": cosine_distance(now[b, k], self._start[b, k]),
                    "separation": fisher_separation(features[block], self.labels[:, column]),
                }
            record["anchor_gap"][name] = cosine_distance(now[0, k], now[1, k])
        self._centroids = {e: c for e, c in self._centroids.items() if e < epoch}
        self._centroids[epoch] = now
        self.history = [r for r in self.history if r["epoch"] <= epoch] + [record]
        if logs is not None:
            logs.update(self.log_values(record))
        self._save()

    def on_train_end(self, logs=None):
        if self.out_dir and self.history:
            from keras_mamsf.evaluation.plots import drift_curves
            from keras_mamsf.utils import write_bytes_atomic

            write_bytes_atomic(os.path.join(self.out_dir, "drift.png"), drift_curves(self.summary()))

    def log_values(self, record):
        """The flat `{key: value}` an epoch adds to the Keras logs (keys as in the module doc)."""
        values = {}
        for name in self.classes:
            for block in BLOCKS:
                values[f"drift_{block}_{name}"] = record[block][name]["drift"]
                values[f"drift_start_{block}_{name}"] = record[block][name]["drift_start"]
                values[f"separation_{block}_{name}"] = record[block][name]["separation"]
            values[f"anchor_gap_{name}"] = record["anchor_gap"][name]
        return values

    # -- drift.json ----------------------------------------------------------------
    def summary(self):
        """What `drift.json` holds: the probe, the classes rarest first, and one record per epoch."""
        positives = self.labels.sum(axis=0)
        return {
            "anchor_mode": self._mode if hasattr(self, "_mode") else None,
            "probe": {"images": int(len(self.labels)), "per_class": self.per_class, "seed": self.seed,
                      "positives": {name: int(positives[self.label_names.index(name)]) for name in self.classes}},
            "classes": self.classes,
            "train_positives": self.class_counts,
            "blocks": list(BLOCKS),
            "epochs": self.history,
        }

    def _paths(self):
        return os.path.join(self.out_dir, "drift.json"), os.path.join(self.out_dir, "drift_centroids.npz")

    def _save(self):
        if not self.out_dir:
            return
        from keras_mamsf.utils import write_bytes_atomic, write_json_atomic

        json_path, npz_path = self._paths()
        buffer = io.BytesIO()
        epochs = sorted(self._centroids)
        np.savez(buffer, start=self._start, epochs=np.array(epochs, dtype="int64"),
                 centroids=np.stack([self._centroids[e] for e in epochs]), probe_labels=self.labels)
        write_bytes_atomic(npz_path, buffer.getvalue())
        write_json_atomic(json_path, _finite_or_none(self.summary()))

    def _restore(self):
        """Continue a resumed run from its stored reference (same probe only)."""
        if not self.out_dir:
            return False
        json_path, npz_path = self._paths()
        if not (os.path.isfile(json_path) and os.path.isfile(npz_path)):
            return False
        with np.load(npz_path, allow_pickle=False) as stored:
            if stored["probe_labels"].shape != self.labels.shape or not np.array_equal(stored["probe_labels"],
                                                                                        self.labels):
                return False
            self._start = stored["start"]
            self._centroids = {int(e): c for e, c in zip(stored["epochs"], stored["centroids"])}
        with open(json_path, encoding="utf-8") as handle:
            self.history = json.load(handle)["epochs"]
        return True


def _finite_or_none(value):
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
