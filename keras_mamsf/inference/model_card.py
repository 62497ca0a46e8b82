"""The read side of an export folder's model card (`manifest.json` beside the artifact): what a
runner needs to turn outputs into findings (labels, thresholds, the output to read) and whether the
artifact passed its gate. `keras_mamsf.export.manifest` writes it.
"""

import json
import os

from keras_mamsf.labels import CHESTXRAY14_LABELS

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
# What `mamsf train` writes beside best.keras: the thresholds chosen on the validation split.
RUN_THRESHOLDS_NAME = "thresholds.json"


def read_thresholds(path, labels):
    """`{label: threshold}` from a JSON file (`{label: t}` or `{"thresholds": {label: t}}`);
    0.5 for every label without a file."""
    if path is None:
        return {label: 0.5 for label in labels}, "default 0.5 (no --thresholds file)"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read thresholds ({str(error).splitlines()[0]}); expected JSON "
                         f"{{label: threshold}}")
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


def find_manifest(model_path):
    """The manifest that describes `model_path` (in its folder, or above a SavedModel folder),
    and that artifact's entry; `(None, None)` when there is none."""
    model_path = os.path.abspath(os.fspath(model_path)).rstrip(os.sep)
    folder, name = os.path.split(model_path)
    data = read_manifest(os.path.join(folder, MANIFEST_NAME))
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
    one; else ChestX-ray14's labels, the thresholds of the `thresholds.json` a `mamsf train` run wrote
    beside its `best.keras` (0.5 each without one) and the `probs` output. `use_output` is the output
    the artifact's parity check found better (an int8 file's `logits`: finer than its 256-level probs)."""
    return model_card_with_source(model_path)[:3]


def model_card_with_source(model_path):
    """`model_card`'s three, and where the thresholds came from (a file, or "default 0.5")."""
    record, entry = find_manifest(model_path)
    if record:
        use_output = ((entry or {}).get("parity") or {}).get("use_output", "probs")
        return record["labels"], record["thresholds"]["values"], use_output, record["thresholds"].get("source")
    labels = list(CHESTXRAY14_LABELS)
    beside = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path).rstrip(os.sep))), RUN_THRESHOLDS_NAME)
    thresholds, source = read_thresholds(beside if os.path.isfile(beside) else None, labels)
    return labels, thresholds, "probs", source


def read_manifest(path):
    """The manifest at `path`, or None when there is none or it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
