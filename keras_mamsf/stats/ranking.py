"""ROC AUC and average precision for many resamples at once: one sort, then weighted rank sums.

A bootstrap resample that draws image i `w_i` times is the original set with integer weights `w`.
Both metrics need only, for each distinct score held by a positive (a "positive level" g, in
ascending order), the weight P_g of the positives at that score, T_g of the negatives tied with
it, and G_g of the negatives strictly between level g-1 and level g:

    N_below_g = sum_{h <= g} G_h + sum_{h < g} T_h          negatives strictly below level g
    AUC = sum_g P_g * (N_below_g + T_g / 2) / (P * N)       (Mann-Whitney; ties count one half)
    TP_g = P - sum_{h < g} P_h,   FP_g = N - N_below_g      (weight at scores >= level g)
    AP  = sum_g P_g / P * TP_g / (TP_g + FP_g)

These are scikit-learn's `roc_auc_score` and `average_precision_score` on the resample (tested to
1e-9). Negatives above every positive enter only N. The scores are sorted once per class; the
levels number at most the positives, so for rare findings a resample costs little. Weights are
resampled by cluster (a patient's images go together): P, T and G are sparse (levels x clusters)
matrices, and a block of resamples given as cluster counts is one matrix product.
"""

import numpy as np
from scipy import sparse


class RankedScores:
    """One binary problem (labels `y`, scores `score`), ready to be scored under many weightings.

    Args:
        y: (N,) 0/1 labels.
        score: (N,) scores; higher means more likely positive.
        cluster: (N,) integer cluster of each item, 0..K-1 (its patient; `arange(N)` for images).
        clusters: K, the number of clusters (the columns of the count matrices passed to `scores`).

    Example:
        ranked = RankedScores(y, score, np.arange(len(y)), len(y))
        auc, ap = ranked.scores(np.ones((1, len(y))))   # the plain AUC and AP, shape (1,) each
    """

    def __init__(self, y, score, cluster, clusters):
        y = np.asarray(y).astype(bool).reshape(-1)
        score = np.asarray(score, dtype="float64").reshape(-1)
        cluster = np.asarray(cluster, dtype="int64").reshape(-1)
        levels = np.unique(score[y])  # the one sort
        self.levels = len(levels)
        negative_score, negative_cluster = score[~y], cluster[~y]
        above = np.searchsorted(levels, negative_score, side="left")  # first level >= the negative's score
        inside = above < len(levels)
        tied = inside & (levels[np.minimum(above, len(levels) - 1)] == negative_score)
        gap = inside & ~tied
        rows = np.concatenate([np.searchsorted(levels, score[y]), len(levels) + above[tied],
                               2 * len(levels) + above[gap]])
        columns = np.concatenate([cluster[y], negative_cluster[tied], negative_cluster[gap]])
        # Rows: P (levels), then T, then G; duplicates (a patient's images at one level) are summed.
        self._levels = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(3 * len(levels), clusters))
        self._totals = np.stack([np.bincount(cluster[y], minlength=clusters),
                                 np.bincount(negative_cluster, minlength=clusters)], axis=1).astype("float64")

    def scores(self, counts):
        """`(auc, ap)`, each (B,), for B weightings given as cluster counts (B, K); NaN where a
        weighting leaves no positive or no negative."""
        counts = np.asarray(counts, dtype="float64")
        total_pos, total_neg = (counts @ self._totals).T
        pos, tied, gap = np.split(self._levels @ counts.T, 3)  # each (levels, B)
        below = np.cumsum(gap, axis=0) + np.cumsum(tied, axis=0) - tied
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (pos * (below + 0.5 * tied)).sum(axis=0) / (total_pos * total_neg)
            tp = total_pos - (np.cumsum(pos, axis=0) - pos)
            fp = total_neg - below
            precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
            ap = (pos * precision).sum(axis=0) / total_pos
        undefined = (total_pos == 0) | (total_neg == 0)
        auc[undefined] = np.nan
        ap[undefined] = np.nan
        return auc, ap


def is_scorable(y):
    """A class has an AUC on a set only with at least one positive and one negative."""
    positives = int(np.sum(y))
    return 0 < positives < len(y)
