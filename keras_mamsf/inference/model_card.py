"""The model card of any model file: what a runner needs to turn outputs into findings (labels, thresholds, the
output to read, the OOD guard's threshold, whether scores are flip-averaged) and whether the artifact passed its
gate. `find_card` looks, in order, in

1. the file itself (`inference.card.read_card`: every export since 0.3 carries its card);
2. the export folder's `manifest.json` beside it (`card_from_manifest`: what `keras_mamsf.export.manifest`
   writes, and what the embedded card is made from, so the two agree by construction);
3. for a `.keras` file, the `mamsf train` run folder around it (`thresholds.json`, `ood_guard.npz`,
   `config.toml`).
"""

import json
import os

from keras_mamsf.inference.card import SCHEMA, read_card
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.version import __version__

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
    (`inference.runners.predict_scores`), as its model card says (`find_card`); False without one. The
    thresholds were chosen on scores made that way, so every scorer of the model must make them that way too."""
    return bool(find_card(model_path)[0].get("test_time_flip", False))


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


def card_from_manifest(record, entry):
    """The model card of one artifact (`entry` of the manifest `record`): what the exporter embeds in the file and
    what a file without one is read by. A quantized file's own thresholds (chosen on its validation scores) replace
    the float model's."""
    entry = entry or {}
    parity = entry.get("parity") or {}
    own = entry.get("thresholds")
    thresholds = dict(record.get("thresholds") or default_card()["thresholds"])
    if own:
        thresholds.update(values=own["values"], source=own["chosen_on"])
    guard = record.get("ood_guard")
    failures = list(parity.get("failures") or []) or ([entry["error"]] if entry.get("error") else [])
    source = record.get("source_model") or {}
    return {
        "schema": SCHEMA,
        "library": {"name": "keras-mamsf", "version": __version__},
        "created": record.get("created"),
        "artifact": {"format": entry.get("format"), "variant": entry.get("variant"),
                     "status": entry.get("status"), "failures": failures},
        "labels": list(record["labels"]),
        "input": record.get("input"),
        "output": parity.get("use_output", "probs"),
        "test_time_flip": bool(record.get("test_time_flip", False)),
        "thresholds": {"values": thresholds["values"], "source": thresholds.get("source"),
                       "rule": thresholds.get("rule")},
        "ood_guard": None if not guard else {key: guard.get(key) for key in ("output", "threshold", "alpha", "rule")},
        "source_model": {key: source.get(key) for key in ("sha256", "name", "anchor", "initial_weights")},
    }


def default_card(thresholds=None, source="default 0.5 (no --thresholds file)"):
    """The card of a model nothing describes: ChestX-ray14's labels, `thresholds` ({label: t or None}; 0.5 each by
    default), the `probs` output, no OOD guard, one pass per image."""
    labels = list(CHESTXRAY14_LABELS)
    values = thresholds if thresholds is not None else {label: 0.5 for label in labels}
    return {"schema": SCHEMA, "artifact": None, "labels": labels, "output": "probs", "test_time_flip": False,
            "thresholds": {"values": values, "source": source, "rule": None}, "ood_guard": None}


def run_card(model_path):
    """The card of a `.keras` file from the `mamsf train` run folder around it: the run's thresholds.json (0.5
    each without one), its ood_guard.npz and its config.toml's test_time_flip."""
    from keras_mamsf.guard import guard_beside

    path = run_thresholds(model_path)
    card = default_card(*read_thresholds(path, list(CHESTXRAY14_LABELS)))
    card["thresholds"]["rule"] = threshold_rule(path)
    card["test_time_flip"] = bool((_run_config(model_path) or {}).get("test_time_flip", False))
    guard = guard_beside(model_path)
    if guard is not None:
        card["ood_guard"] = {"output": "ood_score", "threshold": float(guard.threshold), "alpha": guard.alpha}
    card["artifact"] = {"format": "keras", "variant": None, "status": "ok", "failures": []}
    return card


def find_card(model_path):
    """`(card, where)`: the model card of `model_path` and where it was found ("the file's own model card", the
    manifest's path, "the run folder of NAME"); `(default_card(), None)` when nothing describes the file. Raises
    `inference.card.CardError` for an embedded card that does not belong to its file."""
    card = read_card(model_path)
    if card is not None:
        return card, "the file's own model card"
    record, entry = find_manifest(model_path)
    if record:
        folder = os.path.dirname(os.path.abspath(os.fspath(model_path)).rstrip(os.sep))
        return card_from_manifest(record, entry), os.path.join(folder, MANIFEST_NAME)
    if os.fspath(model_path).endswith(".keras"):
        card = run_card(model_path)
        described = card["thresholds"]["source"] != default_card()["thresholds"]["source"] or card["ood_guard"]
        return card, (f"the run folder of {os.path.basename(os.fspath(model_path))}" if described else None)
    return default_card(), None


def parity_warning(model_path, card=None):
    """A one-line warning when the model card of `model_path` says it failed its parity check at export
    (`mamsf predict` prints it on stderr), else None."""
    card = card if card is not None else find_card(model_path)[0]
    artifact = card.get("artifact") or {}
    if artifact.get("status") != "failed":
        return None
    reasons = "; ".join(artifact.get("failures") or []) or "see manifest.json"
    return (f"warning: {os.path.basename(os.fspath(model_path).rstrip(os.sep))} failed its parity check at export "
            f"({reasons}); its outputs may not match the trained model's")


def model_card(model_path):
    """`(labels, thresholds, use_output)` of a model file, from its card (`find_card`; ChestX-ray14's labels, 0.5
    each and the `probs` output when nothing describes it). `use_output` is the output the artifact's parity check
    found better (an int8 file's `logits`: finer than its 256-level probs)."""
    return model_card_with_source(model_path)[:3]


def model_card_with_source(model_path):
    """`model_card`'s three, and where the thresholds came from (a file, or "default 0.5")."""
    card = find_card(model_path)[0]
    return card["labels"], card["thresholds"]["values"], card["output"], card["thresholds"]["source"]


def ood_threshold(model_path):
    """The OOD guard's threshold for `model_path`'s `ood_score` (its card's), or None when there is no guard."""
    return (find_card(model_path)[0].get("ood_guard") or {}).get("threshold")


def read_manifest(path):
    """The manifest at `path`, or None when there is none or it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
