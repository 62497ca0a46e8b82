"""`manifest.json` and `labels.txt`, written atomically next to the artifacts.

The manifest is what a device app needs besides the model file: the label order, the input
spec and its normalization, the quantization parameters, the decision thresholds, and what
was checked (parity figures, op versions, Edge TPU readiness), with the SHA-256 of the source
`.keras` file and the versions of every converter and runtime involved.
"""

import datetime
import hashlib
import json
import os
from importlib import metadata

from keras_mamsf.utils import write_text_atomic

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
SCHEMA = "keras-mamsf/export-manifest/1"
_PACKAGES = ("keras-mamsf", "keras", "tensorflow", "numpy", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions():
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def read_thresholds(path, labels):
    """`{label: threshold}` from a JSON file (`{label: t}` or `{"thresholds": {label: t}}`);
    0.5 for every label without a file."""
    if path is None:
        return {label: 0.5 for label in labels}, "default 0.5 (no --thresholds file)"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read thresholds ({str(error).splitlines()[0]}); expected JSON {{label: threshold}}")
    data = data.get("thresholds", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{label: threshold}}")
    missing = [label for label in labels if label not in data]
    unknown = [key for key in data if key not in labels]
    if missing or unknown:
        raise ValueError(f"{path}: thresholds missing for {missing} / unknown labels {unknown}; give one per label")
    bad = [label for label in labels if not isinstance(data[label], (int, float)) or not 0.0 < data[label] < 1.0]
    if bad:
        raise ValueError(f"{path}: thresholds must be numbers in (0, 1); bad: {bad}")
    return {label: float(data[label]) for label in labels}, os.path.abspath(path)


def new_manifest(labels, input_spec, thresholds, threshold_source, source):
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labels": list(labels),
        "input": input_spec,
        "outputs": {
            "probs": "float32 (batch, classes): sigmoid probabilities, label order as `labels`",
            "logits": "float32 (batch, classes): logits; sigmoid(logits) = probs",
        },
        "thresholds": {"values": thresholds, "source": threshold_source},
        "source_model": source,
        "versions": versions(),
        "artifacts": {},
    }


def merge_existing(out_dir, manifest):
    """Keep entries of an earlier export of the *same* source model into `out_dir` (so
    to_savedmodel.py, to_tflite.py and to_onnx.py can share one folder); drop stale ones."""
    previous = _read_manifest(os.path.join(out_dir, MANIFEST_NAME))
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


def find_manifest(model_path):
    """The manifest that describes `model_path` (in its folder, or above a SavedModel folder),
    and that artifact's entry; `(None, None)` when there is none."""
    model_path = os.path.abspath(os.fspath(model_path)).rstrip(os.sep)
    folder, name = os.path.split(model_path)
    data = _read_manifest(os.path.join(folder, MANIFEST_NAME))
    if data is None:
        return None, None
    artifacts = data.get("artifacts", {})
    entry = next((e for e in artifacts.values() if e.get("file") == name), artifacts.get(name))
    return data, entry


def parity_warning(model_path):
    """A one-line warning when the manifest beside `model_path` says it failed its parity
    check at export (`mamsf predict` prints it on stderr), else None."""
    _, entry = find_manifest(model_path)
    if not entry or entry.get("status") != "failed":
        return None
    parity = entry.get("parity") or {}
    reasons = "; ".join(parity.get("failures") or []) or entry.get("error") or "see manifest.json"
    return (f"warning: {os.path.basename(os.fspath(model_path).rstrip(os.sep))} failed its parity check at export "
            f"({reasons}); its outputs may not match the trained model's")


def model_card(model_path):
    """`(labels, thresholds, use_output)` of a model file: from the manifest beside it when there is
    one, else ChestX-ray14's labels, 0.5 each and the `probs` output. `use_output` is the output
    the artifact's parity check found better (an int8 file's `logits`: finer than its 256-level probs)."""
    from keras_mamsf.labels import CHESTXRAY14_LABELS

    record, entry = find_manifest(model_path)
    labels = record["labels"] if record else list(CHESTXRAY14_LABELS)
    thresholds = record["thresholds"]["values"] if record else {label: 0.5 for label in labels}
    use_output = ((entry or {}).get("parity") or {}).get("use_output", "probs")
    return labels, thresholds, use_output


def _read_manifest(path):
    """The manifest at `path`, or None when there is none or it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
