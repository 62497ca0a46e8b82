"""Per-class operating thresholds chosen on validation data, and their figures on test data.

Rules (a score at or above the threshold is called positive, scikit-learn's convention):
- `"guaranteed"` (the default): the highest threshold whose one-sided (1 - delta) Clopper-Pearson lower
  bound of sensitivity on the validation positives is at least S (0.90, delta 0.05): with probability
  >= 1 - delta the population sensitivity is >= S. A class with too few validation positives for that
  (29 for 0.90 at 0.05) gets none: it is "not screened", never called negative;
- `"youden"`: the ROC point with the largest sensitivity + specificity - 1 (Youden's J);
- `"f1"`: the precision-recall point with the largest F1;
- `"sensitivity"`: the highest threshold whose sensitivity is at least S (default 0.90): a screening
  operating point, the most specific one that still catches S of the positives.

Choose thresholds on a validation split, never on the test split they are reported on (that
would make every figure optimistic). On the test split, sensitivity, specificity, PPV and NPV at
each threshold come with the same bootstrap as the AUCs (`confusion_tallies` feeds it).
"""

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from keras_mamsf.stats.ranking import is_scorable

RULES = ("guaranteed", "youden", "f1", "sensitivity")
DEFAULT_RULE = "guaranteed"
MIN_SENSITIVITY = 0.90
DELTA = 0.05
# thresholds.json is read by `mamsf export --thresholds`, which takes values strictly inside (0, 1).
_EPSILON = 1e-7


def choose_threshold(y, score, rule, min_sensitivity=MIN_SENSITIVITY, delta=DELTA):
    """The threshold of one class under `rule`; None when the class has no positive or no negative (or, for
    "guaranteed", too few positives)."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: choose one of {', '.join(RULES)}")
    if not 0.0 < min_sensitivity <= 1.0:
        raise ValueError(f"the minimum sensitivity must be in (0, 1], got {min_sensitivity}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype="float64")
    if not is_scorable(y):
        return None
    if rule == "guaranteed":
        return guaranteed_threshold(y, score, min_sensitivity, delta)[0]
    if rule == "f1":
        precision, recall, cuts = precision_recall_curve(y, score)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1]))
        threshold = cuts[int(np.argmax(f1))]
    else:
        fpr, tpr, cuts = roc_curve(y, score, drop_intermediate=False)
        finite = np.isfinite(cuts)  # the first cut is +inf (nothing called positive)
        fpr, tpr, cuts = fpr[finite], tpr[finite], cuts[finite]
        if rule == "youden":
            threshold = cuts[int(np.argmax(tpr - fpr))]
        else:  # cuts descend, tpr ascends: the first cut reaching S is the highest one
            threshold = cuts[int(np.argmax(tpr >= min_sensitivity - 1e-12))]
    return float(threshold)


def choose_thresholds(y_true, y_score, labels, min_sensitivity=MIN_SENSITIVITY, delta=DELTA):
    """`{rule: {label: threshold or None}}` for every rule, from validation labels and scores."""
    return {rule: {label: choose_threshold(y_true[:, c], y_score[:, c], rule, min_sensitivity, delta)
                   for c, label in enumerate(labels)}
            for rule in RULES}


def threshold_record(y_true, y_score, labels, rule=DEFAULT_RULE, min_sensitivity=MIN_SENSITIVITY, delta=DELTA):
    """The thresholds of `rule` as thresholds.json and the manifest keep them: `{"rule", "min_sensitivity",
    "delta", "thresholds": {label: t or None}, "not_screened": {label: reason}, "classes": {label: {"positives",
    "needed", "caught", "bound"}}}` (`classes` and `not_screened` for the guaranteed rule only)."""
    chosen, classes = {}, {}
    for c, label in enumerate(labels):
        if rule == "guaranteed":
            threshold, classes[label] = guaranteed_threshold(y_true[:, c], y_score[:, c], min_sensitivity, delta)
            chosen[label] = threshold if is_scorable(y_true[:, c]) else None  # as choose_threshold decides
        else:
            chosen[label] = choose_threshold(y_true[:, c], y_score[:, c], rule, min_sensitivity, delta)
    values = file_thresholds(chosen, labels)
    return {"rule": rule, "min_sensitivity": min_sensitivity, "delta": delta, "thresholds": values,
            "not_screened": {label: not_screened(classes[label]) for label in classes if values[label] is None},
            "classes": classes}


# The rules whose threshold is the highest meeting a sensitivity floor: every lower threshold meets it too.
FLOOR_RULES = ("guaranteed", "sensitivity")


def keep_reference_where_met(record, y_true, y_score, labels, reference, delta=DELTA):
    """A quantized file's `threshold_record` (on its own scores) with each class's threshold set back to the
    `reference` model's (`{label: t or None}`) wherever the file meets the rule there: under a floor rule the
    record's own threshold is the highest that meets it, so the reference threshold meets it whenever it is not
    above the file's own. The file then makes the reference model's calls except where it must differ to keep
    the floor. Why: a guaranteed threshold sits on one positive's score (the k-th lowest it must catch), and a
    small change in the order of the few lowest positives moves it to the next one, across a dense band of
    negatives; measured on the recipe's int8 files (2026-12-07), re-chosen thresholds flipped 3.4-4.8% of the
    test calls per screened class, and one rose (Nodule's test sensitivity 0.928 -> 0.841), against 3.0% this way.
    Other rules (youden, f1) have no floor and keep the file's own. Returns the record, with `kept_reference`
    (the labels set back); a class's `classes` entry (guaranteed rule) then describes the kept threshold."""
    if record["rule"] not in FLOOR_RULES:
        return dict(record, kept_reference=[])
    values, classes, kept = dict(record["thresholds"]), dict(record.get("classes") or {}), []
    for c, label in enumerate(labels):
        own, before = values.get(label), reference.get(label)
        if own is None or before is None or before > own:
            continue
        values[label] = before
        kept.append(label)
        if label in classes:
            positive = np.asarray(y_true[:, c]) > 0
            caught = int(np.sum(np.asarray(y_score)[positive, c] >= before))
            classes[label] = dict(classes[label], caught=caught,
                                  bound=sensitivity_lower_bound(caught, int(positive.sum()), delta))
    return dict(record, thresholds=values, classes=classes, kept_reference=kept)


def not_screened(info):
    """The words for a class the guaranteed rule gives no threshold."""
    return f"not screened: {info['positives']} validation positives, {info['needed']} needed"


def positives_needed(sensitivity=MIN_SENSITIVITY, delta=0.05):
    """The fewest validation positives with which `guaranteed_threshold` can guarantee `sensitivity` at
    confidence 1 - `delta` (all of them caught: the bound is delta ** (1 / n)); 29 for 0.90 at 0.05."""
    return int(np.ceil(np.log(delta) / np.log(sensitivity) - 1e-12))


def sensitivity_lower_bound(caught, positives, delta=0.05):
    """One-sided (1 - `delta`) Clopper-Pearson lower bound of a sensitivity seen as `caught` of `positives`."""
    from scipy.stats import beta

    return 0.0 if caught == 0 else float(beta.ppf(delta, caught, positives - caught + 1))


def guaranteed_threshold(y, score, sensitivity=MIN_SENSITIVITY, delta=0.05):
    """The highest threshold whose one-sided (1 - `delta`) Clopper-Pearson lower bound of sensitivity on the
    validation positives is at least `sensitivity`, and what it rests on.

    Distribution-free ("learn then test", Angelopoulos et al. 2021): with probability >= 1 - delta over the
    draw of the validation positives, the population sensitivity at the returned threshold is >= S. The
    plain rule (sensitivity >= S on validation) is a point estimate and falls short about half the time.

    Returns `(threshold or None, {"positives", "needed", "caught", "bound"})`: None when the class has fewer
    positives than `positives_needed(sensitivity, delta)` (it cannot be screened at that guarantee).
    """
    y = np.asarray(y).astype(bool)
    positives = np.sort(np.asarray(score, dtype="float64")[y])[::-1]
    needed = positives_needed(sensitivity, delta)
    info = {"positives": int(len(positives)), "needed": needed, "caught": None, "bound": None}
    if len(positives) < needed:
        return None, info
    for caught in range(1, len(positives) + 1):  # the fewest caught whose bound reaches S: the highest cut
        bound = sensitivity_lower_bound(caught, len(positives), delta)
        if bound >= sensitivity:
            threshold = positives[caught - 1]
            caught_at = int((positives >= threshold).sum())  # ties at the cut are caught too
            info.update(caught=caught_at, bound=sensitivity_lower_bound(caught_at, len(positives), delta))
            return float(threshold), info
    return None, info


def file_thresholds(chosen, labels):
    """`{label: t or None}` for thresholds.json: values strictly inside (0, 1) (what `mamsf export --thresholds`
    accepts); None for a class without a threshold (not screened: never called positive, never negative)."""
    return {label: None if chosen.get(label) is None else float(np.clip(chosen[label], _EPSILON, 1 - _EPSILON))
            for label in labels}


def confusion_tallies(y, score, threshold, cluster, clusters):
    """(clusters, 4) counts of TP, FP, TN, FN per cluster at `threshold`: a bootstrap's counts
    (B, clusters) times this give each resample's confusion matrix."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(score) >= threshold
    cells = (y & called, ~y & called, ~y & ~called, y & ~called)
    return np.stack([np.bincount(cluster, weights=cell.astype("float64"), minlength=clusters) for cell in cells],
                    axis=1)


def operating_figures(tallies):
    """Sensitivity, specificity, PPV and NPV from (..., 4) TP/FP/TN/FN tallies; NaN where undefined."""
    tp, fp, tn, fn = np.moveaxis(np.asarray(tallies, dtype="float64"), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "ppv": tp / (tp + fp),
                "npv": tn / (tn + fn)}


def operating_points(y_true, y_score, thresholds, labels, patient_id=None, n_boot=1000, seed=0):
    """Sensitivity and specificity of each class at its threshold, with percentile 95% CIs from a bootstrap of
    patients (of images without ids): `{label: {"threshold", "positives", "sensitivity": {"value", "ci"},
    "specificity": {"value", "ci"}}}`. A class whose threshold is None (not screened) is left out.

    Args:
        y_true, y_score: (N, C) labels and scores.
        thresholds: C thresholds (or None), in label order.
        labels: the C class names.
        patient_id: (N,) ids, or None.

    Example:

    ```python
    operating_points(y, scores, [0.4, None], ["Effusion", "Hernia"], patient_id)["Effusion"]["sensitivity"]
    ```
    """
    from keras_mamsf.stats.bootstrap import clusters_of, percentile_interval, resample_counts

    y, score = np.asarray(y_true), np.asarray(y_score, dtype="float64")
    cluster, clusters, _ = clusters_of(patient_id, len(y))
    points = [c for c, threshold in enumerate(thresholds) if threshold is not None]
    if not points:
        return {}
    tallies = np.concatenate([confusion_tallies(y[:, c], score[:, c], thresholds[c], cluster, clusters)
                              for c in points], axis=1)  # (clusters, 4 per point)
    resampled = np.concatenate([counts @ tallies for counts in resample_counts(clusters, n_boot, seed)])
    point = operating_figures(tallies.sum(axis=0).reshape(-1, 4))
    samples = operating_figures(resampled.reshape(len(resampled), len(points), 4))
    figures = {}
    for k, c in enumerate(points):
        figures[labels[c]] = {"threshold": float(thresholds[c]), "positives": int(y[:, c].sum())}
        for measure in ("sensitivity", "specificity"):
            value = point[measure][k]
            figures[labels[c]][measure] = {"value": None if not np.isfinite(value) else float(value),
                                           "ci": percentile_interval(samples[measure][:, k])}
    return figures
