"""The evidence for one model (`evaluate_predictions`) and for a pair (`compare_predictions`).

Both return plain JSON-ready dicts in the shapes `metrics.json` and `compare --json` promise:

    metrics = evaluate_predictions(predictions, n_boot=2000, seed=0, validation=val_predictions)
    metrics["per_class"]["Effusion"]["auc_ci"]        # [lo, hi], 95%, logit-normal from the bootstrap
    delta = compare_predictions(anchored, baseline)   # anchored minus baseline, paired
    delta["per_class"]["Hernia"]["p_holm"]

Point estimates use every image once; intervals come from `n_boot` resamples of patients (all of
a patient's images together) when the predictions carry patient ids, of images otherwise
(`"resampling"` says which). Classes with no positive or no negative are "not scorable": listed,
and left out of the macro means. A resample that happens to leave a class without positives
scores that class as undefined and the macro mean of that resample averages the rest. A class with
fewer than `MIN_POSITIVES` positives keeps its point figures but gets no interval and no p-value (and
no Holm entry); its `interval` field says so, and so does every report.
"""

import warnings

import numpy as np

from keras_mamsf.evaluation.predictions import PredictionsError, check_same_images
from keras_mamsf.stats import bootstrap, calibration, delong, thresholds
from keras_mamsf.stats.ranking import RankedScores, is_scorable

# Below this many positives a class gets its point figures but no interval, no p-value and no Holm entry:
# with a handful of positives, which few were drawn decides everything (the demo's Hernia, 1 test
# positive, got "0.978 [0.958, 0.996]" and p = 5e-17: the spread of the negatives alone), and the
# per-class AUC interval reaches its nominal coverage from about 10 positives (simulated; see
# `bootstrap.logit_interval`).
MIN_POSITIVES = 10


def too_few_positives(positives):
    """The words every report prints in place of an interval or a p-value, or None when there are enough."""
    if positives >= MIN_POSITIVES:
        return None
    return f"too few positives for an interval ({positives} < {MIN_POSITIVES})"


def _ranked(predictions, cluster, clusters):
    """One RankedScores per class (None for a class that is not scorable)."""
    return [RankedScores(predictions.y_true[:, c], predictions.y_score[:, c], cluster, clusters)
            if is_scorable(predictions.y_true[:, c]) else None
            for c in range(len(predictions.labels))]


def _class_scores(ranked, counts):
    """AUC and AP of every class under B weightings: two (B, C) arrays, NaN for unscorable classes."""
    auc = np.full((len(counts), len(ranked)), np.nan)
    ap = np.full_like(auc, np.nan)
    for c, scores in enumerate(ranked):
        if scores is not None:
            auc[:, c], ap[:, c] = scores.scores(counts)
    return auc, ap


def _macro(values, scorable):
    """Row means over the scorable classes, ignoring classes undefined in that row."""
    if not scorable.any() or not len(values):
        return np.full(len(values), np.nan)
    with warnings.catch_warnings():  # a row with every class undefined is NaN, said in the docstring
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[:, scorable], axis=1)


def _figure(point, samples):
    value = float(point)
    return (None if not np.isfinite(value) else value), bootstrap.percentile_interval(samples)


def evaluate_predictions(predictions, n_boot=bootstrap.N_BOOT, seed=0, validation=None,
                         threshold_rule=thresholds.DEFAULT_RULE, min_sensitivity=thresholds.MIN_SENSITIVITY,
                         source=None, delta=thresholds.DELTA):
    """Per-class, macro and micro AUC / AP with bootstrap CIs, thresholds, calibration.

    Args:
        predictions: the `Predictions` to evaluate (usually the test split).
        n_boot: bootstrap resamples (>= 100 for a usable 95% interval; 0 for point estimates only).
        seed: seed of the resampling.
        validation: `Predictions` of a validation split (same labels) to choose thresholds on;
            None leaves `"thresholds"` empty (they are never chosen on the set they are reported on).
        threshold_rule: the rule whose thresholds go to `thresholds.json` (`thresholds.RULES`).
        min_sensitivity: S of the "guaranteed" and "sensitivity" rules.
        delta: the "guaranteed" rule's 1 - confidence (its sensitivity bound holds with probability 1 - delta).
        source: what was evaluated (model file and hash, data root, split, ...), copied into the result.

    Returns:
        The `metrics.json` dict (see the module docstring of `keras_mamsf.evaluation`).
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if threshold_rule not in thresholds.RULES:
        raise ValueError(f"unknown threshold rule {threshold_rule!r}: choose one of {', '.join(thresholds.RULES)}")
    labels, y, score = predictions.labels, predictions.y_true, predictions.y_score
    cluster, clusters, resampling = bootstrap.clusters_of(predictions.patient_id, predictions.n_images)
    ranked = _ranked(predictions, cluster, clusters)
    scorable = np.array([r is not None for r in ranked])
    micro = RankedScores(y.reshape(-1), score.reshape(-1), np.repeat(cluster, len(labels)), clusters)

    chosen = None
    if validation is not None:
        if validation.labels != labels:
            raise PredictionsError(f"{validation.source}: labels differ from {predictions.source}'s")
        chosen = thresholds.choose_thresholds(validation.y_true, validation.y_score, labels, min_sensitivity, delta)
    # Tallies of TP/FP/TN/FN per cluster for every (rule, class) with a threshold: (clusters, 4 * points).
    points = [(rule, c) for rule in thresholds.RULES for c in range(len(labels))
              if chosen is not None and chosen[rule][labels[c]] is not None]
    tallies = (np.concatenate([thresholds.confusion_tallies(y[:, c], score[:, c], chosen[rule][labels[c]], cluster,
                                                            clusters) for rule, c in points], axis=1)
               if points else np.zeros((clusters, 0)))

    ones = np.ones((1, clusters))
    point_auc, point_ap = _class_scores(ranked, ones)
    point_micro = micro.scores(ones)
    samples = {"auc": [], "ap": [], "micro_auc": [], "micro_ap": [], "tallies": []}
    for counts in bootstrap.resample_counts(clusters, n_boot, seed):
        auc, ap = _class_scores(ranked, counts)
        samples["auc"].append(auc)
        samples["ap"].append(ap)
        micro_auc, micro_ap = micro.scores(counts)
        samples["micro_auc"].append(micro_auc)
        samples["micro_ap"].append(micro_ap)
        samples["tallies"].append(counts @ tallies)
    empty = {"auc": (0, len(labels)), "ap": (0, len(labels)), "micro_auc": (0,), "micro_ap": (0,),
             "tallies": (0, tallies.shape[1])}
    samples = {name: np.concatenate(parts) if parts else np.zeros(empty[name]) for name, parts in samples.items()}

    per_class = {}
    for c, label in enumerate(labels):
        auc, _ = _figure(point_auc[0, c], samples["auc"][:, c])
        ap, ap_ci = _figure(point_ap[0, c], samples["ap"][:, c])
        positives = int(y[:, c].sum())
        interval = scorable[c] and too_few_positives(positives) is None
        per_class[label] = {
            "auc": auc, "auc_ci": bootstrap.logit_interval(auc, samples["auc"][:, c]) if interval else None,
            "ap": ap, "ap_ci": ap_ci if interval else None,
            "positives": positives, "negatives": int(len(y) - y[:, c].sum()), "scorable": bool(scorable[c]),
            "interval": None if not scorable[c] else too_few_positives(positives),
            "ece": calibration.expected_calibration_error(y[:, c], score[:, c]),
        }
    macro_auc, macro_auc_ci = _figure(_macro(point_auc, scorable)[0], _macro(samples["auc"], scorable))
    macro_ap, macro_ap_ci = _figure(_macro(point_ap, scorable)[0], _macro(samples["ap"], scorable))
    micro_auc, micro_auc_ci = _figure(point_micro[0][0], samples["micro_auc"])
    micro_ap, micro_ap_ci = _figure(point_micro[1][0], samples["micro_ap"])
    return {
        "per_class": per_class,
        "macro": {"auc": macro_auc, "auc_ci": macro_auc_ci, "ap": macro_ap, "ap_ci": macro_ap_ci,
                  "classes": int(scorable.sum()),
                  "included": [label for label, ok in zip(labels, scorable) if ok],
                  "not_scorable": [label for label, ok in zip(labels, scorable) if not ok]},
        "micro": {"auc": micro_auc, "auc_ci": micro_auc_ci, "ap": micro_ap, "ap_ci": micro_ap_ci},
        "thresholds": _threshold_report(chosen, points, tallies, samples["tallies"], labels, threshold_rule,
                                        min_sensitivity, delta, validation, y.sum(axis=0).astype(int)),
        "calibration": {"bins": calibration.BINS, "probabilities": calibration.is_probability(score),
                        "micro_ece": calibration.expected_calibration_error(y, score)},
        "n_images": predictions.n_images,
        "n_patients": predictions.n_patients,
        "resampling": resampling,
        "n_boot": int(n_boot),
        "confidence": bootstrap.CONFIDENCE,
        "seed": int(seed),
        "source": dict(source or {"predictions": predictions.source}),
    }


def _threshold_report(chosen, points, tallies, boot_tallies, labels, rule, min_sensitivity, delta, validation,
                      positives):
    if chosen is None:
        return {}
    figures = {label: {} for label in labels}
    point = thresholds.operating_figures(tallies.sum(axis=0).reshape(-1, 4)) if points else {}
    boot = thresholds.operating_figures(boot_tallies.reshape(len(boot_tallies), len(points), 4)) if points else {}
    for k, (name, c) in enumerate(points):
        figures[labels[c]][name] = {"threshold": chosen[name][labels[c]]}
        for measure, values in point.items():
            value, ci = _figure(values[k], boot[measure][:, k])
            enough = too_few_positives(positives[c]) is None  # a sensitivity of 1 of 1 positives has no interval
            figures[labels[c]][name][measure] = {"value": value, "ci": ci if enough else None}
    record = thresholds.threshold_record(validation.y_true, validation.y_score, labels, rule, min_sensitivity, delta)
    return {
        "rule": rule,
        "min_sensitivity": min_sensitivity,
        "delta": delta,
        "chosen_on": {"source": validation.source, "n_images": validation.n_images},
        "values": record["thresholds"],
        "not_chosen": [label for label in labels if chosen[rule][label] is None],
        "not_screened": record["not_screened"],
        "guarantee": record["classes"],
        "per_class": figures,
    }


def thresholds_file(report):
    """thresholds.json (what `mamsf export` and `mamsf predict` read) from `metrics["thresholds"]`: the rule, S,
    delta, where they were chosen, `{label: threshold or None}`, the classes not screened, and under the
    guaranteed rule what each threshold rests on."""
    return {"rule": report["rule"], "min_sensitivity": report["min_sensitivity"], "delta": report["delta"],
            "chosen_on": report["chosen_on"], "thresholds": report["values"], "not_screened": report["not_screened"],
            "classes": report["guarantee"]}


def compare_predictions(a, b, n_boot=bootstrap.N_BOOT, seed=0):
    """A minus B on the same images: per-class delta AUC with a paired bootstrap CI and DeLong's
    p-value (raw and Holm-adjusted over the classes scorable in both), and the macro delta with a
    paired bootstrap CI and p-value. Raises PredictionsError if the files cover different images,
    labels or ground truth.

    Example:

    ```python
    result = compare_predictions(Predictions.load("anchored.npz"), Predictions.load("none.npz"))
    result["macro"]["delta_auc"], result["macro"]["ci"], result["macro"]["p_value"]
    ```
    """
    check_same_images(a, b)
    patient_id = a.patient_id if a.patient_id is not None else b.patient_id
    cluster, clusters, resampling = bootstrap.clusters_of(patient_id, a.n_images)
    ranked_a, ranked_b = _ranked(a, cluster, clusters), _ranked(b, cluster, clusters)
    scorable = np.array([r is not None for r in ranked_a])  # same y_true, so the same for b
    ones = np.ones((1, clusters))
    point = _class_scores(ranked_a, ones)[0] - _class_scores(ranked_b, ones)[0]
    deltas = [_class_scores(ranked_a, counts)[0] - _class_scores(ranked_b, counts)[0]
              for counts in bootstrap.resample_counts(clusters, n_boot, seed)]
    deltas = np.concatenate(deltas) if deltas else np.zeros((0, len(a.labels)))
    tests = [delong.delong_test(a.y_true[:, c], a.y_score[:, c], b.y_score[:, c]) if scorable[c] else None
             for c in range(len(a.labels))]
    positives = a.y_true.sum(axis=0).astype(int)
    # Holm counts only the classes tested: scorable, with enough positives.
    tested = [t is not None and too_few_positives(positives[c]) is None for c, t in enumerate(tests)]
    adjusted = delong.holm([t["p_value"] if ok else None for t, ok in zip(tests, tested)])
    per_class = {}
    for c, label in enumerate(a.labels):
        test = tests[c]
        per_class[label] = {
            "delta_auc": None if test is None else test["delta"],
            "ci": bootstrap.percentile_interval(deltas[:, c]) if tested[c] else None,
            "p_value": test["p_value"] if tested[c] else None,
            "p_holm": adjusted[c],
            "interval": None if test is None else too_few_positives(positives[c]),
            "auc_a": None if test is None else test["auc_a"],
            "auc_b": None if test is None else test["auc_b"],
            "positives": int(positives[c]),
            "scorable": test is not None,
        }
    macro_samples = _macro(deltas, scorable) if len(deltas) else np.zeros(0)
    macro_point = _macro(point, scorable)[0]
    return {
        "per_class": per_class,
        "macro": {"delta_auc": None if not np.isfinite(macro_point) else float(macro_point),
                  "ci": bootstrap.percentile_interval(macro_samples), "p_value": bootstrap.two_sided_p(macro_samples),
                  "classes": int(scorable.sum())},
        "n_images": a.n_images,
        "n_patients": a.n_patients if a.patient_id is not None else b.n_patients,
        "resampling": resampling,
        "n_boot": int(n_boot),
        "confidence": bootstrap.CONFIDENCE,
        "seed": int(seed),
        "a": a.source,
        "b": b.source,
        "method": {"ci": f"paired {resampling} bootstrap, percentile", "p_value": "DeLong (fast midrank), two-sided",
                   "p_holm": "Holm over the scorable classes", "macro_p_value": f"paired {resampling} bootstrap"},
    }
