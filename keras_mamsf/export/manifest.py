"""`manifest.json` and `labels.txt`, written atomically next to the artifacts.

The manifest is what a device app needs besides the model file: the label order, the input
spec and its normalization, the quantization parameters, the decision thresholds, and what
was checked (parity figures, op versions, Edge TPU readiness), with the SHA-256 of the source
`.keras` file and the versions of every converter and runtime involved.
"""

import datetime
import json
import os
from importlib import metadata

from keras_mamsf.inference.model_card import LABELS_NAME, MANIFEST_NAME, read_manifest
from keras_mamsf.utils import write_text_atomic

SCHEMA = "keras-mamsf/export-manifest/1"
_PACKAGES = ("keras-mamsf", "keras", "tensorflow", "numpy", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime")


def versions():
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def new_manifest(labels, input_spec, thresholds, threshold_source, source):
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labels": list(labels),
        "input": input_spec,
        "outputs": {
            "probs": "float32 (batch, classes): sigmoid probabilities, label order as `labels`",
            "logits": "float32 (batch, classes): logits; sigmoid(logits) = probs",
            "ood_score": "float32 (batch,): the out-of-distribution guard's score (Mahalanobis distance of the "
                         "image's statistics from the training images'); above `ood_guard.threshold` the image is "
                         "not like the training images: withhold the findings",
        },
        "thresholds": {"values": thresholds, "source": threshold_source},
        "source_model": source,
        "versions": versions(),
        "artifacts": {},
    }


def merge_existing(out_dir, manifest):
    """Keep entries of an earlier export of the *same* source model into `out_dir` (so
    to_savedmodel.py, to_tflite.py and to_onnx.py can share one folder); drop stale ones."""
    previous = read_manifest(os.path.join(out_dir, MANIFEST_NAME))
    if previous is None:
        return manifest
    same = previous.get("source_model", {}).get("sha256") == manifest["source_model"]["sha256"]
    if same:
        kept = {name: entry for name, entry in previous.get("artifacts", {}).items()
                if entry.get("file") and os.path.exists(os.path.join(out_dir, entry["file"]))}
        manifest["artifacts"] = dict(kept, **manifest["artifacts"])
    return manifest


def write(out_dir, manifest):
    os.makedirs(out_dir, exist_ok=True)
    write_text_atomic(os.path.join(out_dir, LABELS_NAME), "".join(f"{label}\n" for label in manifest["labels"]))
    write_text_atomic(os.path.join(out_dir, MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return os.path.join(out_dir, MANIFEST_NAME)
