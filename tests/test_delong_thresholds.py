"""DeLong's test against the direct Mann-Whitney structural components, Holm's adjustment,
threshold rules against brute force, and the calibration error against its definition."""

import numpy as np
import pytest
from scipy import stats

from keras_mamsf.evaluation import (
    Predictions,
    compare_predictions,
    evaluate_predictions,
)
from keras_mamsf.stats.calibration import expected_calibration_error
from keras_mamsf.stats.delong import delong_test, holm
from keras_mamsf.stats.thresholds import choose_threshold, file_thresholds

from conftest import binary_case


def _direct_delong(y, a, b):
    """O(m n): the Mann-Whitney kernel psi(x, y) = 1, 1/2, 0 for every positive-negative pair."""
    y = np.asarray(y).astype(bool)
    components = []
    for score in (a, b):
        x, z = score[y][:, None], score[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        components.append((psi.mean(axis=1), psi.mean(axis=0)))  # V10 per positive, V01 per negative
    m, n = int(y.sum()), int((~y).sum())
    s10 = np.cov(np.stack([components[0][0], components[1][0]]))
    s01 = np.cov(np.stack([components[0][1], components[1][1]]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    delta = components[0][0].mean() - components[1][0].mean()
    return delta, variance, 2 * stats.norm.sf(abs(delta) / np.sqrt(variance))


@pytest.mark.parametrize("ties", [False, True])
def test_delong_equals_the_direct_structural_components(ties):
    rng = np.random.default_rng(0)
    for _ in range(10):
        y, a = binary_case(rng, int(rng.integers(30, 300)), 0.35)
        n = len(y)
        b = 0.6 * a + rng.normal(size=n) * 0.8 + 0.3 * y  # correlated with a, as two models on one set
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        result = delong_test(y, a, b)
        delta, variance, p_value = _direct_delong(y, a, b)
        assert result["delta"] == pytest.approx(delta, abs=1e-12)
        assert abs(result["variance"] - variance) < 1e-9
        assert result["p_value"] == pytest.approx(p_value, rel=1e-6)


def test_identical_scores_give_delta_zero_and_p_one():
    rng = np.random.default_rng(1)
    y = (rng.random((150, 3)) < 0.3).astype(int)
    score = rng.normal(size=(150, 3)) + y
    result = delong_test(y[:, 0], score[:, 0], score[:, 0])
    assert (result["delta"], result["variance"], result["p_value"]) == (0.0, 0.0, 1.0)
    same = Predictions(y, score, labels=["a", "b", "c"], patient_id=np.arange(150) // 3)
    comparison = compare_predictions(same, same, n_boot=200)
    for entry in comparison["per_class"].values():
        assert (entry["delta_auc"], entry["p_value"], entry["p_holm"], entry["ci"]) == (0.0, 1.0, 1.0, [0.0, 0.0])
    assert (comparison["macro"]["delta_auc"], comparison["macro"]["p_value"]) == (0.0, 1.0)
    assert comparison["resampling"] == "patient" and comparison["n_patients"] == 50


def test_compare_finds_a_real_difference_and_is_antisymmetric():
    rng = np.random.default_rng(2)
    y = (rng.random((400, 2)) < 0.4).astype(int)
    noise = rng.normal(size=(400, 2))
    good = Predictions(y, noise + 1.5 * y, labels=["a", "b"], source="good")
    weak = Predictions(y, noise + 0.5 * y + rng.normal(size=(400, 2)), labels=["a", "b"], source="weak")
    forward, backward = compare_predictions(good, weak, n_boot=500), compare_predictions(weak, good, n_boot=500)
    for label in "ab":
        assert forward["per_class"][label]["delta_auc"] > 0.1 and forward["per_class"][label]["p_value"] < 1e-6
        assert forward["per_class"][label]["ci"][0] > 0
        assert backward["per_class"][label]["delta_auc"] == pytest.approx(-forward["per_class"][label]["delta_auc"])
        assert backward["per_class"][label]["p_value"] == pytest.approx(forward["per_class"][label]["p_value"])
    assert forward["macro"]["ci"][0] > 0 and forward["macro"]["p_value"] < 0.01


def test_holm():
    # Worked example: p = 0.01, 0.04, 0.03, 0.005 -> sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1, made monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def _brute(y, score, rule, s=0.9):
    best = None
    for t in np.unique(score):
        called = score >= t
        tp, fp = np.sum(called & y), np.sum(called & ~y)
        fn, tn = np.sum(~called & y), np.sum(~called & ~y)
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        if rule == "youden":
            key = sensitivity + specificity - 1
        elif rule == "f1":
            key = 2 * tp / (2 * tp + fp + fn)
        else:
            key = t if sensitivity >= s else -np.inf
        if best is None or key > best[0]:
            best = (key, t)
    return best[1]


@pytest.mark.parametrize("rule", ["youden", "f1", "sensitivity"])
def test_threshold_rules_match_brute_force(rule):
    rng = np.random.default_rng(3)
    for _ in range(15):
        y, score = binary_case(rng, int(rng.integers(20, 200)), 0.3, decimals=2)
        assert choose_threshold(y, score, rule) == pytest.approx(_brute(y, score, rule)), rule
    assert choose_threshold(np.zeros(5), np.arange(5.0), rule) is None


def test_threshold_figures_on_the_test_set_and_the_file():
    rng = np.random.default_rng(4)
    labels = ["a", "b", "c"]
    y_val = (rng.random((300, 3)) < 0.3).astype(int)
    y_val[:, 2] = 0  # no positives in val: no threshold for c
    validation = Predictions(y_val, 1 / (1 + np.exp(-(rng.normal(size=(300, 3)) + 2 * y_val))), labels=labels,
                             source="val.npz")
    y = (rng.random((200, 3)) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=(200, 3)) + 2 * y)))
    metrics = evaluate_predictions(Predictions(y, score, labels=labels, patient_id=np.arange(200) // 2),
                                   n_boot=300, validation=validation, threshold_rule="youden")
    report = metrics["thresholds"]
    assert report["rule"] == "youden" and report["not_chosen"] == ["c"] and report["values"]["c"] is None
    t = choose_threshold(y_val[:, 0], validation.y_score[:, 0], "sensitivity")
    entry = report["per_class"]["a"]["sensitivity"]
    assert entry["threshold"] == t
    called, positive = score[:, 0] >= t, y[:, 0] == 1
    assert entry["sensitivity"]["value"] == pytest.approx(np.mean(called[positive]))
    assert entry["specificity"]["value"] == pytest.approx(np.mean(~called[~positive]))
    assert entry["ppv"]["value"] == pytest.approx(np.mean(positive[called]))
    assert entry["npv"]["value"] == pytest.approx(np.mean(~positive[~called]))
    lo, hi = entry["sensitivity"]["ci"]
    assert lo <= entry["sensitivity"]["value"] <= hi and hi - lo > 0
    assert report["values"]["a"] == pytest.approx(report["per_class"]["a"]["youden"]["threshold"])
    assert file_thresholds({"x": 1.0, "y": 0.0, "z": None}, ["x", "y", "z"]) == {
        "x": pytest.approx(1 - 1e-7), "y": pytest.approx(1e-7), "z": None}
    # Without validation data nothing is chosen (never on the test set itself).
    assert evaluate_predictions(Predictions(y, score, labels=labels), n_boot=0)["thresholds"] == {}


def test_the_guaranteed_rule_is_the_default_and_its_file_says_what_it_rests_on():
    """thresholds.json under the default rule: per class the Clopper-Pearson bound it rests on, and the classes with
    too few validation positives named "not screened" with no threshold (never 0.5)."""
    from keras_mamsf.stats.thresholds import guaranteed_threshold, sensitivity_lower_bound

    rng = np.random.default_rng(6)
    labels = ["common", "rare"]
    y_val = np.zeros((400, 2), int)
    y_val[:80, 0] = 1  # 80 positives: screenable at S = 0.9, delta = 0.05
    y_val[:12, 1] = 1  # 12 < 29: not screened
    validation = Predictions(y_val, 1 / (1 + np.exp(-(rng.normal(size=(400, 2)) + 2 * y_val))), labels=labels,
                             source="val.npz")
    y = (rng.random((200, 2)) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=(200, 2)) + 2 * y)))
    report = evaluate_predictions(Predictions(y, score, labels=labels), n_boot=200, validation=validation)["thresholds"]
    expected, info = guaranteed_threshold(y_val[:, 0], validation.y_score[:, 0], 0.9, 0.05)
    assert report["rule"] == "guaranteed" and report["values"]["common"] == pytest.approx(expected)
    assert report["values"]["rare"] is None
    assert report["not_screened"] == {"rare": "not screened: 12 validation positives, 29 needed"}
    caught = int((validation.y_score[:80, 0] >= expected).sum())
    assert report["guarantee"]["common"]["caught"] == caught == info["caught"]
    bound = sensitivity_lower_bound(caught, 80, 0.05)
    assert report["guarantee"]["common"]["bound"] == pytest.approx(bound) and bound >= 0.9
    assert sensitivity_lower_bound(caught - 1, 80, 0.05) < 0.9  # the highest threshold: one fewer would not do
    from keras_mamsf.evaluation.evaluate import thresholds_file

    written = thresholds_file(report)
    assert (written["rule"], written["min_sensitivity"], written["delta"]) == ("guaranteed", 0.9, 0.05)
    assert written["thresholds"] == report["values"] and written["classes"]["rare"]["positives"] == 12
    figures = report["per_class"]["common"]["guaranteed"]["sensitivity"]
    called = score[:, 0] >= expected
    assert figures["value"] == pytest.approx(called[y[:, 0] == 1].mean()) and figures["ci"] is not None
    stricter = evaluate_predictions(Predictions(y, score, labels=labels), n_boot=0, validation=validation,
                                    delta=0.01)["thresholds"]
    assert stricter["values"]["common"] <= report["values"]["common"]  # more confidence, a lower threshold


def test_expected_calibration_error_by_its_definition():
    rng = np.random.default_rng(5)
    score = rng.random(1000)
    y = (rng.random(1000) < score ** 2).astype(int)  # overconfident
    bins = np.minimum((score * 10).astype(int), 9)
    expected = sum(np.sum(bins == b) / 1000 * abs(y[bins == b].mean() - score[bins == b].mean())
                   for b in range(10) if np.any(bins == b))
    assert expected_calibration_error(y, score) == pytest.approx(expected, abs=1e-12)
    assert expected_calibration_error(y, score * 3) is None  # not probabilities
    calibrated = (rng.random(200000) < (s := rng.random(200000))).astype(int)
    assert expected_calibration_error(calibrated, s) < 0.01


def test_the_guaranteed_threshold_holds_its_sensitivity_where_the_plain_rule_falls_short():
    """Issue 25, acceptance 1: binormal scores (negatives N(0, 1), positives N(1.5, 1)); over 1,000
    simulated validation sets of 60 positives, the population sensitivity at the guaranteed threshold
    (computed exactly from the known distribution) is >= 0.90 in at least 95% of them; at the plain rule's
    threshold it falls short in roughly half."""
    from scipy.stats import norm

    from keras_mamsf.stats.thresholds import (
        choose_threshold,
        guaranteed_threshold,
        positives_needed,
        sensitivity_lower_bound,
    )

    rng = np.random.default_rng(0)
    target, delta, shift = 0.90, 0.05, 1.5
    held, short = [], []
    for _ in range(1000):
        y = np.r_[np.ones(60), np.zeros(200)]
        score = np.r_[rng.normal(shift, 1.0, 60), rng.normal(0.0, 1.0, 200)]
        threshold, info = guaranteed_threshold(y, score, target, delta)
        assert info["bound"] >= target and info["positives"] == 60
        held.append(norm.sf(threshold - shift) >= target)
        plain = choose_threshold(y, score, "sensitivity", target)
        short.append(norm.sf(plain - shift) < target)
    assert np.mean(held) >= 1 - delta, np.mean(held)
    assert 0.3 <= np.mean(short) <= 0.7, np.mean(short)
    # Too few positives for the guarantee: no threshold, and how many would do.
    assert positives_needed(0.90, 0.05) == 29
    assert sensitivity_lower_bound(29, 29, 0.05) >= 0.90 > sensitivity_lower_bound(28, 28, 0.05)
    y = np.r_[np.ones(28), np.zeros(50)]
    threshold, info = guaranteed_threshold(y, rng.normal(size=78), 0.90, 0.05)
    assert threshold is None and info == {"positives": 28, "needed": 29, "caught": None, "bound": None}


@pytest.mark.parametrize("rule", ["guaranteed", "sensitivity"])
def test_a_quantized_file_keeps_the_float_threshold_wherever_it_meets_the_floor_there(rule):
    """Three classes: the file's own threshold above the float model's (the float one meets the floor on the file's
    scores: kept), below it (the floor fails at the float one: the file's own), and a class neither screens. The
    kept class's sensitivity bound is recomputed at the kept threshold, by Clopper-Pearson from scipy."""
    from keras_mamsf.stats.thresholds import keep_reference_where_met, threshold_record

    rng = np.random.default_rng(7)
    labels = ["kept", "lowered", "unscreened"]
    y = np.zeros((600, 3), int)
    y[:100, :2] = 1
    y[:5, 2] = 1
    score = 1 / (1 + np.exp(-(rng.normal(size=(600, 3)) + 2 * y)))
    record = threshold_record(y, score, labels, rule)
    own = record["thresholds"]
    reference = {"kept": own["kept"] - 0.01, "lowered": own["lowered"] + 0.01, "unscreened": None}
    kept = keep_reference_where_met(record, y, score, labels, reference)
    assert kept["thresholds"] == {"kept": reference["kept"], "lowered": own["lowered"], "unscreened": own["unscreened"]}
    assert kept["kept_reference"] == ["kept"] and record["thresholds"] == own  # the input is left as it was
    if rule == "guaranteed":
        caught = int((score[:100, 0] >= reference["kept"]).sum())
        assert caught >= record["classes"]["kept"]["caught"]
        bound = stats.beta.ppf(0.05, caught, 100 - caught + 1)
        assert kept["classes"]["kept"]["caught"] == caught and kept["classes"]["kept"]["bound"] == pytest.approx(bound)
        assert bound >= 0.9 and kept["classes"]["lowered"] == record["classes"]["lowered"]
    else:
        assert (score[:100, 0] >= reference["kept"]).mean() >= 0.9  # the floor holds at the kept threshold


def test_rules_without_a_floor_keep_the_files_own_thresholds():
    from keras_mamsf.stats.thresholds import keep_reference_where_met, threshold_record

    rng = np.random.default_rng(8)
    y = (rng.random((300, 1)) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=(300, 1)) + 2 * y)))
    record = threshold_record(y, score, ["a"], "youden")
    kept = keep_reference_where_met(record, y, score, ["a"], {"a": record["thresholds"]["a"] - 0.01})
    assert kept["thresholds"] == record["thresholds"] and kept["kept_reference"] == []
