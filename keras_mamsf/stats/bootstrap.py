"""Bootstrap resampling by patient (or by image), as count matrices, and percentile intervals.

A patient's follow-up images are correlated: resampling images as if independent understates the
spread (ChestX-ray14's test split has 25,596 images of only 2,797 patients). So when patient ids
are known, a resample draws *patients* with replacement and takes all of each drawn patient's
images; otherwise it draws images. A resample is given as counts per cluster (B x K), which
`RankedScores` turns into weights without copying any images. Paired comparisons use the same
counts for both models.
"""

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
# Resamples are drawn in blocks of this many rows: bounded memory (a block of image-level counts
# on NIH's test split is 25,596 columns), and the same draws whatever the total.
BLOCK = 100


def clusters_of(patient_id, n_images):
    """`(cluster index per image, number of clusters, "patient" | "image")`."""
    if patient_id is None:
        return np.arange(n_images), n_images, "image"
    _, cluster = np.unique(np.asarray(patient_id), return_inverse=True)
    cluster = cluster.reshape(-1)
    return cluster, int(cluster.max()) + 1 if len(cluster) else 0, "patient"


def resample_counts(clusters, n_boot=N_BOOT, seed=0):
    """Yields blocks of bootstrap counts, each (<= BLOCK, clusters): row b says how often each
    cluster was drawn in resample b (rows sum to `clusters`). Seeded; the same for any consumer."""
    rng = np.random.default_rng(seed)
    uniform = np.full(clusters, 1.0 / clusters)
    for start in range(0, n_boot, BLOCK):
        yield rng.multinomial(clusters, uniform, size=min(BLOCK, n_boot - start)).astype("float64")


def percentile_interval(samples, confidence=CONFIDENCE):
    """`[lo, hi]`, the percentile interval of the finite samples; None when there are none."""
    samples = np.asarray(samples, dtype="float64")
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def logit_interval(point, samples, confidence=CONFIDENCE):
    """`[lo, hi]` for a proportion-like figure in [0, 1] (an AUC): normal on the logit scale, with the
    bootstrap's standard deviation of logit(samples); None without finite samples.

    For one class's AUC with 10-30 positives the percentile interval falls short of 95% (simulated,
    1,000 sets each: 82.8-92.5% with 10 positives depending on the AUC); this one stays within 92-98%
    (`tests/test_evaluation_metrics.py`). A figure at 0 or 1, or without spread, keeps the percentile
    interval (its logit is infinite or its spread zero)."""
    from scipy.stats import norm

    samples = np.asarray(samples, dtype="float64")
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None
    inside = samples[(samples > 0) & (samples < 1)]
    if not 0 < point < 1 or len(inside) < 2:
        return percentile_interval(samples, confidence)
    spread = np.std(np.log(inside / (1 - inside)), ddof=1)
    if spread == 0:
        return percentile_interval(samples, confidence)
    centre, half = np.log(point / (1 - point)), norm.ppf(0.5 + confidence / 2) * spread
    return [float(1 / (1 + np.exp(-(centre - half)))), float(1 / (1 + np.exp(-(centre + half))))]


def two_sided_p(differences):
    """Bootstrap p-value of "the difference is 0": twice the smaller tail beyond 0, with the
    (1 + count) / (1 + B) correction so that it is never exactly 0; 1 when all differences are 0."""
    differences = np.asarray(differences, dtype="float64")
    differences = differences[np.isfinite(differences)]
    if not len(differences) or not np.any(differences):
        return 1.0
    below = (1 + np.sum(differences <= 0)) / (1 + len(differences))
    above = (1 + np.sum(differences >= 0)) / (1 + len(differences))
    return float(min(1.0, 2.0 * min(below, above)))
