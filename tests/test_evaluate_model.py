"""`mamsf evaluate --model` on a synthetic root, for the Keras model and its int8 TFLite export
(run by tests/export_worker.py beside the rest of the suite; the assertions are here)."""

import json

import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.evaluation import Predictions
from keras_mamsf.labels import CHESTXRAY14_LABELS

from conftest import worker_report

# These wait for a worker process that trains and converts for minutes.
pytestmark = pytest.mark.slow

FILES = {"predictions.npz", "metrics.json", "report.md", "report.html", "roc_curves.png", "pr_curves.png",
         "reliability.png", "auc_forest.png"}


@pytest.fixture(scope="module")
def evaluated():
    report = worker_report("export")
    assert "error" not in report, report.get("traceback", report)
    assert report["evaluations"] == {"eval_keras": 0, "eval_int8": 0}
    return report


def test_evaluate_keras_model_on_the_test_split(evaluated):
    from pathlib import Path

    from PIL import Image

    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.images import load_image
    from keras_mamsf.utils.digest import sha256_of

    out = Path(evaluated["eval_keras"])
    assert FILES | {"thresholds.json"} <= {p.name for p in out.iterdir()}
    for name in ("roc_curves.png", "pr_curves.png", "reliability.png", "auc_forest.png"):
        with Image.open(out / name) as image:
            image.load()
    metrics = json.loads((out / "metrics.json").read_text())
    source = metrics["source"]
    assert (source["split"], source["images_from"], source["model_sha256"]) == ("test", "png",
                                                                                sha256_of(evaluated["model"]))
    index = nih.read_nih(evaluated["root"])
    test = splits.make_splits(index.records, index.lists, "official", 0.3, 0)["test"]
    predictions = Predictions.load(out / "predictions.npz")
    assert predictions.image_index.tolist() == [r.image for r in test]
    assert predictions.patient_id.tolist() == [r.patient for r in test]
    assert np.array_equal(predictions.y_true, np.stack([r.labels for r in test]))
    assert (metrics["n_images"], metrics["n_patients"], metrics["resampling"]) == (
        len(test), len({r.patient for r in test}), "patient")
    # Scores equal the Keras model's on the same images read by another path (predict's loader).
    model = mamsf.load_model(evaluated["model"])
    images = np.stack([load_image(r.path, 32, 1) for r in test[:6]])
    assert np.abs(model.predict(images, verbose=0) - predictions.y_score[:6]).max() < 1e-4
    markdown = (out / "report.md").read_text()
    assert "| split | test |" in markdown and "| seed | 0 |" in markdown and "resamples of patients" in markdown
    assert f"| model_sha256 | {source['model_sha256']} |" in markdown
    thresholds = json.loads((out / "thresholds.json").read_text())
    values = thresholds["thresholds"]
    assert list(values) == list(CHESTXRAY14_LABELS) and all(t is None or 0 < t < 1 for t in values.values())
    assert {label for label, t in values.items() if t is None} == set(thresholds["not_screened"])
    assert metrics["thresholds"]["chosen_on"]["source"].endswith("on val")


def test_evaluate_int8_export_reports_its_auc_change(evaluated):
    from pathlib import Path

    keras_metrics = json.loads((Path(evaluated["eval_keras"]) / "metrics.json").read_text())
    out = Path(evaluated["eval_int8"])
    assert FILES <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((Path(evaluated["out"]) / "manifest.json").read_text())
    assert metrics["source"]["output"] == manifest["artifacts"]["model_int8.tflite"]["parity"]["use_output"]
    change = metrics["vs_baseline"]
    assert change["n_images"] == keras_metrics["n_images"]
    for label, entry in change["per_class"].items():
        mine, theirs = metrics["per_class"][label]["auc"], keras_metrics["per_class"][label]["auc"]
        if entry["scorable"]:
            assert entry["delta_auc"] == pytest.approx(mine - theirs, abs=1e-12)
            if entry["interval"] is None:  # enough positives for an interval and a test
                assert entry["ci"] is not None and 0 <= entry["p_value"] <= 1
            else:
                assert entry["ci"] is None and entry["p_value"] is None and entry["p_holm"] is None
        else:
            assert mine is None and theirs is None
    assert "AUC change against the baseline" in (out / "report.md").read_text()
