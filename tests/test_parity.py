"""Parity figures and gates against an independent computation."""

import numpy as np
from sklearn.metrics import roc_auc_score

from keras_mamsf.export.calibration import select_images
from keras_mamsf.export.parity import GATES, artifact_parity, check_gate, compare

NAMES = ["a", "b", "c"]


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.3, 0.1, 0.02]).astype("float32")
    reference = np.clip(labels * 0.4 + rng.random((n, 3)) * 0.6, 0, 1)
    return labels, reference


def test_compare_matches_sklearn_and_numpy():
    labels, reference = _data()
    candidate = np.clip(reference + np.random.default_rng(1).normal(0, 0.05, reference.shape), 0, 1)
    figures = compare(reference, candidate, labels, NAMES, [0.5, 0.4, 0.3])
    for i, name in enumerate(NAMES):
        drop = roc_auc_score(labels[:, i], reference[:, i]) - roc_auc_score(labels[:, i], candidate[:, i])
        assert abs(figures["class_auc_drop"][name] - drop) < 1e-12
    assert figures["max_dp"] == np.abs(candidate - reference).max()
    expected = np.mean((candidate >= [0.5, 0.4, 0.3]) == (reference >= [0.5, 0.4, 0.3]))
    assert figures["threshold_agreement"] == expected


def test_gates_name_what_failed():
    labels, reference = _data()
    close = reference + 5e-5
    assert check_gate(compare(reference, close, labels, NAMES, [0.5] * 3), GATES["exact"]) == (True, [])
    shuffled = reference.copy()
    shuffled[:, 1] = np.random.default_rng(2).random(len(reference))  # class b loses its ranking
    figures = compare(reference, shuffled, labels, NAMES, [0.5] * 3)
    ok, reasons = check_gate(figures, GATES["quantized"])
    drop = figures["class_auc_drop"]["b"]
    assert not ok and reasons[0].startswith("max |dp|")
    assert f"b AUC change {-drop:+.4f} (allowed: down to -0.02)" in reasons and drop > 0.02
    # int8: the better of the probs and the host-sigmoid logits paths is used and named.
    logits = np.log(reference / (1 - reference + 1e-12) + 1e-12)
    entry = artifact_parity("quantized", "int8", reference, {"probs": shuffled, "logits": logits}, labels, NAMES,
                            [0.5] * 3)
    assert entry["status"] == "passed" and entry["use_output"] == "logits"
    assert set(entry["paths"]) == {"probs", "logits"}
    entry = artifact_parity("exact", "float32", reference, {"probs": shuffled, "logits": logits}, labels, NAMES,
                            [0.5] * 3)
    assert entry["status"] == "failed" and entry["failures"][0].startswith("max |dp|")


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
