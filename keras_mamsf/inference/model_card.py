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
# ... and where the backbone's initial weights came from (package, version, file, SHA-256).
INITIAL_WEIGHTS_NAME = "initial_weights.json"


def read_thresholds(path, labels):
    """`{label: threshold or None}` from a JSON file (`{label: t}`, or a run's thresholds.json:
    `{"rule": ..., "thresholds": {label: t or null}, ...}`); None is "not screened" (the guaranteed rule
    had too few validation positives): never called positive, never reported negative. 0.5 for every
    label without a file."""
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
    bad = [label for label in labels if data[label] is not None
           and (not isinstance(data[label], (int, float)) or not 0.0 < data[label] < 1.0)]
    if bad:
        raise ValueError(f"{path}: thresholds must be numbers in (0, 1) or null (not screened); bad: {bad}")
    return ({label: None if data[label] is None else float(data[label]) for label in labels},
            os.path.abspath(path))


def threshold_rule(path):
    """What a run's thresholds.json says about its rule (rule, S, delta, the guarantee per class, the classes
    not screened); None for a plain `{label: t}` file or no file."""
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or "rule" not in data:
        return None
    return {key: data.get(key) for key in ("rule", "min_sensitivity", "delta", "not_screened", "classes")}


def run_thresholds(model_path):
    """The thresholds.json a `mamsf train` run wrote beside `model_path`, or None."""
    beside = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path).rstrip(os.sep))), RUN_THRESHOLDS_NAME)
    return beside if os.path.isfile(beside) else None


def _run_config(model_path):
    """The config.toml of the `mamsf train` run that wrote `model_path` (beside it), or None."""
    beside = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path).rstrip(os.sep))), "config.toml")
    if not os.path.isfile(beside):
        return None
    import tomllib

    with open(beside, "rb") as handle:
        return tomllib.load(handle)  # written by `TrainConfig.write`: checked keys, defaults filled in


def run_initial_weights(model_path):
    """Where the backbone's initial weights of the `mamsf train` run that wrote `model_path` came from (its
    `initial_weights.json` beside it: `backbones.pretrained.weights_source`), or None."""
    beside = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path).rstrip(os.sep))), INITIAL_WEIGHTS_NAME)
    if not os.path.isfile(beside):
        return None
    with open(beside, encoding="utf-8") as handle:
        return json.load(handle)


def run_split(model_path):
    """The split settings of the `mamsf train` run that wrote `model_path` (its config.toml beside it), as
    `data.sources.open_root(split=...)` takes them; None for a model outside a run folder."""
    config = _run_config(model_path)
    if config is None:
        return None
    defaults = {"split": "official", "val_fraction": 0.1, "split_seed": 0, "view": "all"}
    config = {key: config.get(key, value) for key, value in defaults.items()}
    return {"method": config["split"], "val_fraction": config["val_fraction"], "seed": config["split_seed"],
            "view": config["view"]}


def uses_test_time_flip(model_path):
    """Whether `model_path`'s scores are the mean over each image and its left-right mirror
    (`inference.runners.predict_scores`): the manifest's `test_time_flip` beside an export, else the
    `test_time_flip` of the run's config.toml beside a `.keras` file; False without either. The thresholds were
    chosen on scores made that way, so every scorer of the model must make them that way too."""
    record, _ = find_manifest(model_path)
    if record:
        return bool(record.get("test_time_flip", False))
    return bool((_run_config(model_path) or {}).get("test_time_flip", False))


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
    one (a quantized file's own thresholds when export chose them on its validation scores); else
    ChestX-ray14's labels, the thresholds of the `thresholds.json` a `mamsf train` run wrote beside its
    `best.keras` (0.5 each without one) and the `probs` output. `use_output` is the output
    the artifact's parity check found better (an int8 file's `logits`: finer than its 256-level probs)."""
    return model_card_with_source(model_path)[:3]


def model_card_with_source(model_path):
    """`model_card`'s three, and where the thresholds came from (a file, or "default 0.5")."""
    record, entry = find_manifest(model_path)
    if record:
        use_output = ((entry or {}).get("parity") or {}).get("use_output", "probs")
        own = (entry or {}).get("thresholds")  # a quantized file's own, chosen on its validation scores
        if own:
            return record["labels"], own["values"], use_output, own["chosen_on"]
        return record["labels"], record["thresholds"]["values"], use_output, record["thresholds"].get("source")
    labels = list(CHESTXRAY14_LABELS)
    thresholds, source = read_thresholds(run_thresholds(model_path), labels)
    return labels, thresholds, "probs", source


def ood_threshold(model_path):
    """The OOD guard's threshold for `model_path`'s `ood_score`: from the manifest beside an export, or the
    `ood_guard.npz` beside a `.keras` file; None when there is no guard."""
    record, _ = find_manifest(model_path)
    if record:
        return (record.get("ood_guard") or {}).get("threshold")
    from keras_mamsf.guard import guard_beside

    guard = guard_beside(model_path)
    return None if guard is None else guard.threshold


def read_manifest(path):
    """The manifest at `path`, or None when there is none or it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
