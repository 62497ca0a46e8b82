"""Parity of an exported artifact with the Keras float model, and its pass/fail gate.

On the same held-out images (the validation split, patient ids known): max and mean |dp| and the
agreement of the decisions at the thresholds, for every artifact. float32 artifacts pass when max |dp|
<= 1e-4. Quantized ones pass that bound or the non-inferiority test of their AUCs
(`stats.noninferiority`: per class and macro, the AUC change with its paired patient-bootstrap
one-sided bounds and DeLong p-value; pass / fail / not shown / not judged), the one AUC implementation
of the library (`stats.ranking`). An int8 file (full or mixed) is measured twice: from its `probs` output (a
sigmoid with 256 levels) and from its `logits` with the sigmoid on the host; the better path is named in
`use_output`. `decision_figures` adds, at the thresholds each model is deployed with, the share of
decisions that flip per class and both models' sensitivity and specificity with CIs.
"""

import numpy as np

from keras_mamsf.export.gates import GATES


def compare(reference, candidate, names, thresholds):
    """|dp| figures of `candidate` probabilities against `reference` (the Keras float model), and the share of
    decisions both make alike at `thresholds` (a class without one, None, is never called by either)."""
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    thresholds = np.asarray([np.nan if t is None else t for t in thresholds], "float64")
    dp = np.abs(candidate - reference)
    return {
        "images": int(len(reference)),
        "max_dp": float(dp.max()),
        "mean_dp": float(dp.mean()),
        "threshold_agreement": float(np.mean((candidate >= thresholds) == (reference >= thresholds))),
    }


def artifact_parity(gate_kind, variant, reference, outputs, labels, names, thresholds, gates=None, patient_id=None):
    """The parity entry of one artifact: figures per output path, the path to use, the verdict.

    Args:
        gate_kind: "exact" or "quantized" (the format's or TFLite variant's, from their tables).
        variant: the TFLite variant ("int8" and "int8_mixed" are read through both their outputs) or "float32".
        reference: (N, C) probabilities of the Keras float model; `outputs` the artifact's on the same images.
        labels: (N, C) 0/1; `names` the C classes; `thresholds` C values (None: not screened).
        gates: `{"exact": {...}, "quantized": {...}}` (default `GATES`).
        patient_id: (N,) ids for the bootstrap (None: images are resampled).
    """
    from keras_mamsf.export.litert import INT8, MIXED
    from keras_mamsf.inference.runners import sigmoid

    gate = dict((gates or GATES)[gate_kind])
    scores = {"probs": outputs["probs"]}
    if variant in (INT8, MIXED):  # a mixed file's sigmoid may be one of its int8 ops
        scores["logits"] = sigmoid(outputs["logits"])
    paths = {name: compare(reference, value, names, thresholds) for name, value in scores.items()}
    close = {name: figures["max_dp"] <= gate["max_dp"] for name, figures in paths.items()}
    if gate_kind == "exact":
        figures = paths["probs"]
        return {"status": "passed" if close["probs"] else "failed", "gate": gate, "use_output": "probs",
                "failures": [] if close["probs"] else [f"max |dp| {figures['max_dp']:.3g} > {gate['max_dp']:g}"],
                "paths": paths}
    from keras_mamsf.stats.noninferiority import auc_noninferiority

    tests = {name: auc_noninferiority(labels, reference, value, patient_id, names, margin=gate["margin"],
                                      min_positives=gate["min_positives"], n_boot=gate["n_boot"],
                                      confidence=gate["confidence"])
             for name, value in scores.items()}
    passed = {name: close[name] or tests[name]["passed"] for name in scores}
    for name, test in tests.items():
        paths[name].update(macro_auc_change=test["macro"]["delta"], noninferiority=test["macro"]["verdict"])

    def preference(name):  # a passing path first, then the smaller macro AUC loss, then the smaller |dp|
        delta = tests[name]["macro"]["delta"]
        return (passed[name], -np.inf if delta is None else delta, -paths[name]["max_dp"])

    use = max(scores, key=preference)
    return {"status": "passed" if passed[use] else "failed", "gate": gate, "use_output": use,
            "failures": [] if passed[use] else tests[use]["failures"], "paths": paths,
            "noninferiority": tests[use]}


def decision_figures(labels, reference, candidate, names, reference_thresholds, candidate_thresholds,
                     patient_id=None, n_boot=1000, seed=0):
    """At the thresholds each model is deployed with (the float model's, the quantized file's own): per class the
    share of images whose call flips, and each model's sensitivity and specificity with 95% CIs.
    `{"flipped": {label: share}, "reference": operating points, "candidate": operating points}` (a class not
    screened by either is left out)."""
    from keras_mamsf.stats.thresholds import operating_points

    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    return {"flipped": flipped_calls(reference, candidate, names, reference_thresholds, candidate_thresholds),
            "reference": operating_points(labels, reference, reference_thresholds, names, patient_id, n_boot, seed),
            "candidate": operating_points(labels, candidate, candidate_thresholds, names, patient_id, n_boot, seed)}


def flipped_calls(reference, candidate, names, reference_thresholds, candidate_thresholds):
    """`{label: share}`: per class the share of images called differently by the two models, each at its own
    threshold (None: never called); a class screened by neither is left out."""
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    flipped = {}
    for c, name in enumerate(names):
        before, after = reference_thresholds[c], candidate_thresholds[c]
        if before is None and after is None:
            continue
        called = reference[:, c] >= before if before is not None else np.zeros(len(reference), bool)
        called_now = candidate[:, c] >= after if after is not None else np.zeros(len(candidate), bool)
        flipped[name] = float(np.mean(called != called_now))
    return flipped


def ood_parity(reference, candidate, threshold):
    """The OOD guard's `ood_score` of an artifact against the Keras float model's: Spearman's rank correlation,
    the share of images on the same side of the threshold, and the largest absolute difference."""
    from scipy.stats import spearmanr

    reference, candidate = np.asarray(reference, "float64").reshape(-1), np.asarray(candidate, "float64").reshape(-1)
    constant = np.ptp(reference) == 0 or np.ptp(candidate) == 0
    return {
        "images": int(len(reference)),
        "spearman": None if constant else float(spearmanr(reference, candidate).statistic),
        "verdict_agreement": float(np.mean((reference > threshold) == (candidate > threshold))),
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
    }


def gate_table(record):
    """The gate of every quantized artifact of an export manifest `record` as one table (lines): per artifact
    the macro and each judged class, its positives, AUC change [one-sided bounds] and verdict."""
    tested = {name: entry["parity"] for name, entry in record["artifacts"].items()
              if "noninferiority" in (entry.get("parity") or {})}
    if not tested:
        return []
    first = next(iter(tested.values()))["noninferiority"]
    lines = [f"gate of the quantized files (AUC change against the Keras model; {record['parity_data']['source']}): "
             f"a class passes when the one-sided {first['confidence']:.0%} lower bound of its change is above "
             f"-{first['margin']:g}, fails when the upper bound is below it, else is not shown",
             f"{'artifact':<26} {'class':<22} {'positives':>9}  {'AUC change [bounds]':<27}  verdict"]
    for name, check in tested.items():
        test = check["noninferiority"]
        rows = [(f"macro ({test['macro']['classes']} classes)", "", test["macro"])]
        rows += [(label, entry["positives"], entry) for label, entry in test["per_class"].items()
                 if entry["verdict"] != "not judged"]
        for k, (label, positives, entry) in enumerate(rows):
            change = "-" if entry["bounds"] is None else (
                f"{entry['delta']:+.4f} [{entry['bounds'][0]:+.4f}, {entry['bounds'][1]:+.4f}]")
            lines.append(f"{name if k == 0 else '':<26} {label:<22} {positives!s:>9}  {change:<27}  {entry['verdict']}")
        lines.append(f"{'':<26} => {'PASSED' if check['status'] == 'passed' else 'FAILED'}"
                     + (" (max |dp| within the exact bound)" if check["status"] == "passed" and not test["passed"]
                        else ""))
    not_judged = [f"{label} {entry['positives']}" for label, entry in first["per_class"].items()
                  if entry["verdict"] == "not judged"]
    if not_judged:
        lines.append(f"not judged (fewer than {first['min_positives']} positives): {', '.join(not_judged)}")
    return lines
