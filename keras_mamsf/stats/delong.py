"""DeLong's test for two correlated ROC AUCs (scores of two models on the same images).

DeLong, DeLong & Clarke-Pearson (1988), computed with the fast midrank algorithm of Sun & Xu
(2014): with m positives X and n negatives Y, the structural components are

    V10_i = (midrank of X_i among all - midrank of X_i among X) / n      (one per positive)
    V01_j = 1 - (midrank of Y_j among all - midrank of Y_j among Y) / m  (one per negative)

their means are the AUC, and Var(AUC_A - AUC_B) = (S10_AA + S10_BB - 2 S10_AB) / m + (same for S01) / n,
with S the sample covariances (1 / (m - 1)) of the components of A and B. O((m + n) log(m + n))
instead of the direct O(m n) Mann-Whitney kernel (which the tests compute independently).

The test treats images as independent: with several images per patient it is somewhat liberal,
which is why the macro difference also gets a patient-bootstrap interval.
"""

import numpy as np
from scipy import stats


def structural_components(y, score):
    """`(v10, v01)`: one component per positive and per negative (their means are the AUC)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype="float64")
    positives, negatives = score[y], score[~y]
    m, n = len(positives), len(negatives)
    combined = stats.rankdata(np.concatenate([positives, negatives]))
    v10 = (combined[:m] - stats.rankdata(positives)) / n
    v01 = 1.0 - (combined[m:] - stats.rankdata(negatives)) / m
    return v10, v01


def delong_test(y, score_a, score_b):
    """`{"auc_a", "auc_b", "delta", "variance", "z", "p_value"}` for AUC_A - AUC_B on the same items.

    Args:
        y: (N,) 0/1 labels with at least one positive and one negative (else ValueError).
        score_a, score_b: (N,) scores of the two models on the same N items.

    Example:
        delong_test([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.2, 0.3, 0.5, 0.6])["p_value"]
    """
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs at least one positive and one negative")
    a10, a01 = structural_components(y, score_a)
    b10, b01 = structural_components(y, score_b)
    auc_a, auc_b = float(a10.mean()), float(b10.mean())
    variance = _difference_variance(a10, b10, m) + _difference_variance(a01, b01, n)
    delta = auc_a - auc_b
    if variance <= 0.0:  # identical rankings (or one item per side): no spread to test against
        z, p_value = (0.0, 1.0) if delta == 0.0 else (float(np.sign(delta) * np.inf), 0.0)
    else:
        z = delta / np.sqrt(variance)
        p_value = float(2.0 * stats.norm.sf(abs(z)))
    return {"auc_a": auc_a, "auc_b": auc_b, "delta": delta, "variance": float(variance), "z": float(z),
            "p_value": p_value}


def _difference_variance(components_a, components_b, count):
    if count < 2:
        return 0.0
    covariance = np.cov(np.stack([components_a, components_b]))  # 1 / (count - 1)
    return float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]) / count


def holm(p_values):
    """Holm's step-down adjustment (family-wise error) of a list of p-values; None entries (tests
    not made) are passed through and do not count in the family."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted
