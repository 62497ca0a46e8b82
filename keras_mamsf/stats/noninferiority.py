"""Is a quantized model's AUC no worse than the float model's by more than a margin? A non-inferiority test.

    result = auc_noninferiority(y_true, float_scores, int8_scores, patient_id, labels, margin=0.02)
    result["passed"], result["per_class"]["Effusion"]["verdict"]   # "pass" | "fail" | "not shown" | "not judged"

Per class, delta = AUC(candidate) - AUC(reference) on the same images, with a paired bootstrap (patients
resampled when their ids are known, the same resamples for both models) giving one-sided `confidence` bounds
(the lower and upper percentiles of the resampled deltas):

- **pass**: the lower bound is above -margin (the drop is shown to be smaller than the margin);
- **fail**: the upper bound is below -margin (the drop is shown to be larger);
- **not shown**: the interval straddles -margin: this set cannot tell (more images, or more positives, can);
- **not judged**: fewer than `min_positives` positives (or no negative): one image changing rank moves the AUC by
  more than the margin, and no interval is worth printing.

The macro delta (mean over the judged classes) gets the same rule; the file passes when the macro passes and
every judged class passes. A sample AUC drop compared with 0.02 without an interval cannot tell "quantization broke
this class" from "this parity set cannot say"; this test says which. DeLong's two-sided p-value of each delta is
reported beside it.
"""

import numpy as np

from keras_mamsf.stats.bootstrap import clusters_of, resample_counts

MARGIN = 0.02
MIN_POSITIVES = 20
CONFIDENCE = 0.95  # one-sided
N_BOOT = 1000
PASS, FAIL, NOT_SHOWN, NOT_JUDGED = "pass", "fail", "not shown", "not judged"


def verdict(lower, upper, margin):
    """The verdict of a delta whose one-sided bounds are `lower` and `upper`."""
    if lower > -margin:
        return PASS
    if upper < -margin:
        return FAIL
    return NOT_SHOWN


def auc_noninferiority(y_true, reference, candidate, patient_id=None, labels=None, margin=MARGIN,
                       min_positives=MIN_POSITIVES, n_boot=N_BOOT, seed=0, confidence=CONFIDENCE):
    """The non-inferiority test of `candidate` (N, C) scores against `reference` (N, C) on labels `y_true` (N, C).

    Returns `{"passed", "failures", "margin", "min_positives", "confidence", "n_boot", "resampling", "images",
    "patients", "per_class": {label: {"positives", "auc_reference", "auc_candidate", "delta", "bounds", "p_value",
    "verdict"}}, "macro": {"delta", "bounds", "classes", "verdict"}}`.
    """
    # here, not at import: `export.gates` reads this module's defaults, and `mamsf --help` runs without SciPy
    from keras_mamsf.stats.delong import delong_test
    from keras_mamsf.stats.ranking import RankedScores, is_scorable

    y = np.asarray(y_true).astype(int)
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    if y.shape != reference.shape or y.shape != candidate.shape:
        raise ValueError(f"labels {y.shape}, reference {reference.shape} and candidate {candidate.shape} differ")
    if margin <= 0 or not 0.5 < confidence < 1 or n_boot < 100:
        raise ValueError(f"margin must be > 0, confidence in (0.5, 1) and n_boot >= 100; got {margin}, {confidence}, "
                         f"{n_boot}")
    labels = list(labels) if labels is not None else [str(c) for c in range(y.shape[1])]
    cluster, clusters, resampling = clusters_of(patient_id, len(y))
    judged = [is_scorable(y[:, c]) and int(y[:, c].sum()) >= min_positives for c in range(y.shape[1])]
    pairs = {c: (RankedScores(y[:, c], reference[:, c], cluster, clusters),
                 RankedScores(y[:, c], candidate[:, c], cluster, clusters)) for c in np.flatnonzero(judged)}
    deltas = []  # (B, judged classes)
    for counts in resample_counts(clusters, n_boot, seed):
        deltas.append(np.stack([pairs[c][1].scores(counts)[0] - pairs[c][0].scores(counts)[0] for c in pairs],
                               axis=1) if pairs else np.zeros((len(counts), 0)))
    deltas = np.concatenate(deltas)
    tail = 100.0 * (1.0 - confidence)

    def bounds(samples):
        samples = samples[np.isfinite(samples)]
        return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100.0 - tail))]

    per_class, judged_deltas = {}, []
    for c, label in enumerate(labels):
        entry = {"positives": int(y[:, c].sum()), "auc_reference": None, "auc_candidate": None, "delta": None,
                 "bounds": None, "p_value": None, "verdict": NOT_JUDGED}
        if is_scorable(y[:, c]):
            test = delong_test(y[:, c], candidate[:, c], reference[:, c])
            entry.update(auc_reference=test["auc_b"], auc_candidate=test["auc_a"], delta=test["delta"],
                         p_value=test["p_value"])
        if judged[c]:
            column = deltas[:, list(pairs).index(c)]
            entry["bounds"] = bounds(column)
            entry["verdict"] = verdict(*entry["bounds"], margin)
            judged_deltas.append(entry["delta"])
        per_class[label] = entry
    macro = {"delta": None, "bounds": None, "classes": len(pairs), "verdict": NOT_JUDGED}
    if pairs:
        macro.update(delta=float(np.mean(judged_deltas)), bounds=bounds(np.nanmean(deltas, axis=1)))
        macro["verdict"] = verdict(*macro["bounds"], margin)
    failures = [f"{label} AUC change {entry['delta']:+.4f}, one-sided {confidence:.0%} bounds "
                f"[{entry['bounds'][0]:+.4f}, {entry['bounds'][1]:+.4f}]: {entry['verdict']} (margin {margin:g})"
                for label, entry in per_class.items() if entry["verdict"] in (FAIL, NOT_SHOWN)]
    if macro["verdict"] == NOT_JUDGED:
        failures.insert(0, f"no class has {min_positives} positives among these {len(y)} images: nothing can be "
                           "shown (a larger validation split, or a lower minimum of positives)")
    elif macro["verdict"] != PASS:
        failures.insert(0, f"macro AUC change {macro['delta']:+.4f}, one-sided {confidence:.0%} bounds "
                           f"[{macro['bounds'][0]:+.4f}, {macro['bounds'][1]:+.4f}]: {macro['verdict']} "
                           f"(margin {margin:g})")
    return {"passed": not failures, "failures": failures, "margin": margin, "min_positives": min_positives,
            "confidence": confidence, "n_boot": int(n_boot), "resampling": resampling, "images": int(len(y)),
            "patients": int(clusters) if resampling == "patient" else None, "per_class": per_class, "macro": macro}
