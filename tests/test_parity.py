"""Parity figures and the export gates against independent computations: |dp| and agreement (numpy), the
quantized gate as the non-inferiority test (sklearn AUCs), the decisions at the deployed thresholds, the table."""

import numpy as np
from sklearn.metrics import roc_auc_score

from keras_mamsf.export.calibration import select_images
from keras_mamsf.export.gates import GATES
from keras_mamsf.export.parity import artifact_parity, compare, decision_figures, gate_table

NAMES = ["a", "b", "c"]


def _data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.3, 0.2, 0.02]).astype("float32")
    reference = np.clip(labels * 0.4 + rng.random((n, 3)) * 0.6, 0, 1)
    patients = np.arange(n) // 3  # three images per patient
    return labels, reference, patients


def test_compare_matches_numpy():
    labels, reference, _ = _data()
    candidate = np.clip(reference + np.random.default_rng(1).normal(0, 0.05, reference.shape), 0, 1)
    figures = compare(reference, candidate, NAMES, [0.5, 0.4, None])
    assert figures["max_dp"] == np.abs(candidate - reference).max() and figures["images"] == len(reference)
    # a class without a threshold is called by neither model: it always agrees
    called = lambda p: np.c_[p[:, :2] >= [0.5, 0.4], np.zeros(len(p), bool)]  # noqa: E731
    assert figures["threshold_agreement"] == np.mean(called(candidate) == called(reference))


def test_the_exact_gate_is_max_dp():
    labels, reference, patients = _data()
    outputs = {"probs": reference + 5e-5, "logits": None}
    entry = artifact_parity("exact", "float32", reference, outputs, labels, NAMES, [0.5] * 3, patient_id=patients)
    assert entry["status"] == "passed" and entry["failures"] == [] and "noninferiority" not in entry
    entry = artifact_parity("exact", "float32", reference, {"probs": reference + 2e-4}, labels, NAMES, [0.5] * 3)
    assert entry["status"] == "failed" and entry["failures"] == ["max |dp| 0.0002 > 0.0001"]


def test_the_quantized_gate_is_non_inferiority_with_sklearn_aucs():
    labels, reference, patients = _data()
    rng = np.random.default_rng(2)
    close = np.clip(reference + rng.normal(0, 0.01, reference.shape), 0, 1)  # |dp| > 1e-4, ranking kept
    entry = artifact_parity("quantized", "float16", reference, {"probs": close}, labels, NAMES, [0.5] * 3,
                            patient_id=patients)
    test = entry["noninferiority"]
    assert entry["status"] == "passed" and test["passed"] and test["resampling"] == "patient"
    assert test["patients"] == 200 and entry["gate"] == GATES["quantized"]
    for c, name in enumerate(NAMES[:2]):
        expected = roc_auc_score(labels[:, c], close[:, c]) - roc_auc_score(labels[:, c], reference[:, c])
        assert abs(test["per_class"][name]["delta"] - expected) < 1e-12
        assert test["per_class"][name]["verdict"] == "pass"
    assert test["per_class"]["c"]["verdict"] == "not judged"  # 2% of 600: under 20 positives
    assert entry["paths"]["probs"]["noninferiority"] == "pass"
    # class b loses its ranking: the file fails, and says which class and by how much
    broken = close.copy()
    broken[:, 1] = rng.random(len(broken))
    entry = artifact_parity("quantized", "float16", reference, {"probs": broken}, labels, NAMES, [0.5] * 3,
                            patient_id=patients)
    assert entry["status"] == "failed" and entry["noninferiority"]["per_class"]["b"]["verdict"] == "fail"
    assert any(line.startswith("b AUC change -0.") and line.endswith(": fail (margin 0.02)")
               for line in entry["failures"])
    # the margin is an option, recorded with the figures
    loose = dict(GATES["quantized"], margin=1.0)
    entry = artifact_parity("quantized", "float16", reference, {"probs": broken}, labels, NAMES, [0.5] * 3,
                            gates={"quantized": loose}, patient_id=patients)
    assert entry["status"] == "passed" and entry["noninferiority"]["margin"] == 1.0


def test_int8_is_read_through_its_better_output():
    labels, reference, patients = _data()
    coarse = np.round(np.random.default_rng(3).random(reference.shape) * 4) / 4  # the probs output lost it all
    logits = np.log(reference / (1 - reference + 1e-12) + 1e-12)
    entry = artifact_parity("quantized", "int8", reference, {"probs": coarse, "logits": logits}, labels, NAMES,
                            [0.5] * 3, patient_id=patients)
    assert entry["status"] == "passed" and entry["use_output"] == "logits" and set(entry["paths"]) == {"probs",
                                                                                                        "logits"}
    assert entry["paths"]["probs"]["noninferiority"] == "fail"
    # a mixed file too: the search may leave its sigmoid in int8 (measured on four mixed files of the recipe: read
    # through that sigmoid's 1/256 steps, at thresholds of 0.005-0.06, 2.5-3.3% of the calls flipped; 1.9-2.8%
    # through the logits)
    entry = artifact_parity("quantized", "int8_mixed", reference, {"probs": coarse, "logits": logits}, labels,
                            NAMES, [0.5] * 3, patient_id=patients)
    assert entry["status"] == "passed" and entry["use_output"] == "logits"


def test_a_set_without_enough_positives_is_never_a_pass():
    labels, reference, patients = _data(n=60)  # at most ~20 positives: nothing judged
    labels[:, :2] = 0
    labels[:5, :2] = 1
    entry = artifact_parity("quantized", "float16", reference, {"probs": reference + 1e-3}, labels, NAMES,
                            [0.5] * 3, patient_id=patients)
    assert entry["status"] == "failed" and entry["noninferiority"]["macro"]["verdict"] == "not judged"
    assert entry["failures"][0].startswith("no class has 20 positives among these 60 images")
    # within the exact bound a file needs no statistics
    entry = artifact_parity("quantized", "float16", reference, {"probs": reference + 5e-5}, labels, NAMES,
                            [0.5] * 3, patient_id=patients)
    assert entry["status"] == "passed"


def test_decisions_at_the_deployed_thresholds():
    labels, reference, patients = _data()
    candidate = np.clip(reference + np.random.default_rng(4).normal(0, 0.05, reference.shape), 0, 1)
    figures = decision_figures(labels, reference, candidate, NAMES, [0.5, 0.4, None], [0.45, 0.4, None], patients,
                               n_boot=300)
    assert set(figures["flipped"]) == {"a", "b"}  # c is screened by neither
    assert figures["flipped"]["a"] == np.mean((reference[:, 0] >= 0.5) != (candidate[:, 0] >= 0.45))
    for model, scores, threshold in (("reference", reference, 0.5), ("candidate", candidate, 0.45)):
        point = figures[model]["a"]
        positive = labels[:, 0] > 0
        assert point["threshold"] == threshold and point["positives"] == int(positive.sum())
        assert point["sensitivity"]["value"] == np.mean(scores[positive, 0] >= threshold)
        assert point["specificity"]["value"] == np.mean(scores[~positive, 0] < threshold)
        low, high = point["sensitivity"]["ci"]
        assert low < point["sensitivity"]["value"] < high


def test_the_gate_table_names_each_file_class_and_verdict():
    labels, reference, patients = _data()
    rng = np.random.default_rng(5)
    broken = reference.copy()
    broken[:, 1] = rng.random(len(broken))
    record = {"parity_data": {"source": "val split: 600 images, 200 patients"}, "artifacts": {
        "model.onnx": {"parity": artifact_parity("exact", "float32", reference, {"probs": reference}, labels, NAMES,
                                                 [0.5] * 3)},
        "model_int8.tflite": {"parity": artifact_parity("quantized", "float16", reference, {"probs": broken}, labels,
                                                        NAMES, [0.5] * 3, patient_id=patients)}}}
    lines = gate_table(record)
    assert "val split: 600 images, 200 patients" in lines[0] and "-0.02" in lines[0]
    assert lines[2].startswith("model_int8.tflite") and "macro (2 classes)" in lines[2]
    row = next(line for line in lines if line.split()[:1] == ["b"])
    delta = record["artifacts"]["model_int8.tflite"]["parity"]["noninferiority"]["per_class"]["b"]["delta"]
    assert f"{delta:+.4f}" in row and row.endswith("fail") and str(int(labels[:, 1].sum())) in row
    assert "=> FAILED" in lines[-2] and lines[-1].startswith("not judged (fewer than 20 positives): c ")
    assert not any("model.onnx" in line for line in lines)


def test_calibration_sample_covers_every_class():
    labels = np.zeros((500, 4), "float32")
    labels[:100, 0] = 1
    labels[100:103, 1] = 1  # a rare class: 3 positives
    labels[200:260, 2] = 1
    chosen = select_images(labels, 64, seed=0)
    assert len(chosen) == 64 and set(chosen) <= set(range(500))
    counts = labels[chosen].sum(axis=0)
    assert counts[1] >= 8 and counts[0] >= 8 and counts[2] >= 8  # quota 64 // 8 = 8 each, rare ones repeated
    assert counts[3] == 0  # a class without positives cannot be covered
    assert np.array_equal(chosen, select_images(labels, 64, seed=0))
