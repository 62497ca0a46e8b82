"""The int8 gate's statistics as a non-inferiority test (issue 24, acceptance 1), simulated from a binormal model
whose AUCs are known: a true drop of 0.05 fails, a true drop of 0 passes, a small set is "not shown", a class
below the minimum is "not judged", identical scores pass."""

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from keras_mamsf.stats.noninferiority import FAIL, NOT_JUDGED, NOT_SHOWN, PASS, auc_noninferiority

SEPARATION = 1.5  # positives ~ N(1.5, 1), negatives ~ N(0, 1): AUC = Phi(1.5 / sqrt(2)) = 0.856
BASE = norm.cdf(SEPARATION / np.sqrt(2))
JITTER = 0.1  # int8-like noise on every candidate score (alone it lowers the population AUC by 0.002)


def shift_for(drop):
    """The shift of the positives' candidate scores (with JITTER) that lowers the population AUC by `drop`:
    a quantization error that damages one finding."""
    return brentq(lambda d: BASE - norm.cdf((SEPARATION - d) / np.sqrt(2 * (1 + JITTER**2))) - drop, 0.0, 3.0)


def noise_for(drop):
    """The noise on the candidate's scores that alone lowers the population AUC by `drop`."""
    return float(np.sqrt((SEPARATION / norm.ppf(BASE - drop)) ** 2 / 2 - 1))


def verdicts(positives, negatives, noise, shift=0.0, sets=200, **options):
    rng = np.random.default_rng(0)
    found = []
    for k in range(sets):
        y = np.r_[np.ones(positives), np.zeros(negatives)].astype(int)[:, None]
        reference = rng.normal(size=(len(y), 1)) + SEPARATION * y
        candidate = reference + noise * rng.normal(size=reference.shape) - shift * y
        result = auc_noninferiority(y, reference, candidate, n_boot=200, seed=k, **options)
        found.append(result["per_class"]["0"]["verdict"])
    return np.array(found)


def test_the_simulated_drops_are_what_they_claim():
    assert BASE - norm.cdf((SEPARATION - shift_for(0.05)) / np.sqrt(2 * (1 + JITTER**2))) == pytest.approx(0.05)
    assert BASE - norm.cdf(SEPARATION / np.sqrt(2 * (1 + noise_for(0.05) ** 2))) == pytest.approx(0.05)


def test_a_true_drop_of_005_fails_and_a_true_drop_of_0_passes():
    """200 simulated parity sets of 50 positives and 500 negatives: a population drop of 0.05 fails in >= 95% of
    them (measured: all); a candidate that differs by int8-like noise only (a drop of 0.0001) passes in >= 90%."""
    dropped = verdicts(50, 500, JITTER, shift_for(0.05))
    assert np.mean(dropped == FAIL) >= 0.95 and not np.any(dropped == PASS)
    faithful = verdicts(50, 500, 0.02)
    assert np.mean(faithful == PASS) >= 0.90 and not np.any(faithful == FAIL)


def test_a_small_set_is_not_shown_and_a_rare_class_is_not_judged():
    """22 positives and 60 negatives, a drop of 0.05 by noise: the interval straddles the margin ("not shown") in
    most sets; "pass" stays within the one-sided test's 5% (measured: 1 of 100)."""
    small = verdicts(22, 60, noise_for(0.05), sets=100)
    assert np.mean(small == NOT_SHOWN) >= 0.7 and np.mean(small == PASS) <= 0.05
    rare = verdicts(19, 500, 0.0, sets=3)
    assert np.all(rare == NOT_JUDGED)


def test_identical_scores_pass_and_the_file_verdict_needs_every_judged_class():
    rng = np.random.default_rng(3)
    y = (rng.random((800, 3)) < [0.1, 0.2, 0.01]).astype(int)
    reference = rng.normal(size=y.shape) + SEPARATION * y
    same = auc_noninferiority(y, reference, reference.copy(), np.arange(800) // 2, ["a", "b", "c"], n_boot=200)
    assert same["passed"] and same["failures"] == [] and same["resampling"] == "patient" and same["patients"] == 400
    assert [same["per_class"][k]["verdict"] for k in "abc"] == [PASS, PASS, NOT_JUDGED]
    assert same["per_class"]["a"]["bounds"] == [0.0, 0.0] and same["macro"]["classes"] == 2
    broken = reference.copy()
    broken[:, 1] = rng.normal(size=800)  # class b's scores carry no signal any more
    result = auc_noninferiority(y, reference, broken, labels=["a", "b", "c"], n_boot=200)
    assert not result["passed"] and result["per_class"]["b"]["verdict"] == FAIL
    assert result["per_class"]["b"]["delta"] == pytest.approx(
        result["per_class"]["b"]["auc_candidate"] - result["per_class"]["b"]["auc_reference"])
    assert any(line.startswith("b AUC change") for line in result["failures"])
    with pytest.raises(ValueError, match="margin must be > 0"):
        auc_noninferiority(y, reference, reference, margin=0)
