"""Calibration of probabilities: expected calibration error and the reliability diagram's bins.

ECE = sum over equal-width probability bins of (images in bin / images) * |observed frequency -
mean predicted probability| (Naeini et al. 2015; 10 bins, the common choice). It needs scores that
are probabilities (in [0, 1]); for other scores `expected_calibration_error` returns None. A model
can rank well (high AUC) and still be badly calibrated: with too few steps, BatchNorm statistics
lag and every probability collapses towards one value (see the short-runs note).
"""

import numpy as np

BINS = 10


def is_probability(score):
    score = np.asarray(score)
    return bool(np.all((score >= 0.0) & (score <= 1.0)))


def reliability_bins(y, score, bins=BINS):
    """`{"edges", "count", "mean_score", "observed"}` per equal-width bin (empty bins: NaN means)."""
    y = np.asarray(y, dtype="float64").reshape(-1)
    score = np.asarray(score, dtype="float64").reshape(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(score, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, weights=score, minlength=bins) / count
        observed = np.bincount(index, weights=y, minlength=bins) / count
    return {"edges": edges, "count": count, "mean_score": mean_score, "observed": observed}


def expected_calibration_error(y, score, bins=BINS):
    """The ECE of one class (or of pooled classes), or None when `score` is not a probability."""
    if not is_probability(score):
        return None
    table = reliability_bins(y, score, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["observed"][filled] - table["mean_score"][filled])
    return float(np.sum(table["count"][filled] * gaps) / np.sum(table["count"]))
