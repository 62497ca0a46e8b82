"""Parity of an exported artifact with the Keras float model, and its pass/fail gate.

On the same held-out images: per-class ROC AUC of both (scikit-learn), the AUC drops, max and
mean |dp|, and the agreement of the decisions at the thresholds. An int8 file is measured twice:
from its `probs` output (a sigmoid with 256 levels) and from its `logits` with the sigmoid on the
host; the better path is named in `use_output`, and the gate passes if that path passes.
"""

import numpy as np

from keras_mamsf.export.gates import GATES
from keras_mamsf.stats.metrics import per_class_auc


def compare(reference, candidate, labels, names, thresholds):
    """Figures of `candidate` probabilities against `reference` (the Keras float model)."""
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    # a class without a threshold ("not screened": None) is never called, by either model
    thresholds = np.asarray([np.nan if t is None else t for t in thresholds], "float64")
    ref_auc = per_class_auc(labels, reference, names)
    new_auc = per_class_auc(labels, candidate, names)
    drops = {
        name: ref_auc["per_class"][name]["auc"] - new_auc["per_class"][name]["auc"]
        for name in names
        if ref_auc["per_class"][name]["auc"] is not None
    }
    dp = np.abs(candidate - reference)
    return {
        "images": int(len(reference)),
        "max_dp": float(dp.max()),
        "mean_dp": float(dp.mean()),
        "threshold_agreement": float(np.mean((candidate >= thresholds) == (reference >= thresholds))),
        "macro_auc_reference": ref_auc["macro"],
        "macro_auc": new_auc["macro"],
        "macro_auc_drop": None if ref_auc["macro"] is None else ref_auc["macro"] - new_auc["macro"],
        "class_auc": {name: new_auc["per_class"][name]["auc"] for name in names},
        "class_auc_drop": drops,
        "max_class_auc_drop": max(drops.values()) if drops else None,
        "classes_unscored": new_auc["classes_unscored"],
    }


def check_gate(figures, gate):
    """`(passed, [reasons])` for one set of figures against a gate dict.

    With AUC bounds in the gate, `max_dp` is an alternative (either suffices); without, a must.
    """
    close = figures["max_dp"] <= gate.get("max_dp", float("inf"))
    if "max_macro_auc_drop" not in gate and "max_class_auc_drop" not in gate:
        return close, [] if close else [f"max |dp| {figures['max_dp']:.3g} > {gate['max_dp']:g}"]
    if close:
        return True, []
    reasons = []
    if "max_macro_auc_drop" in gate and (figures["macro_auc_drop"] or 0.0) > gate["max_macro_auc_drop"]:
        reasons.append(f"macro AUC change {-figures['macro_auc_drop']:+.4f} (allowed: down to "
                       f"{-gate['max_macro_auc_drop']:+g})")
    if "max_class_auc_drop" in gate and (figures["max_class_auc_drop"] or 0.0) > gate["max_class_auc_drop"]:
        worst = max(figures["class_auc_drop"], key=figures["class_auc_drop"].get)
        reasons.append(f"{worst} AUC change {-figures['max_class_auc_drop']:+.4f} (allowed: down to "
                       f"{-gate['max_class_auc_drop']:+g})")
    if reasons and "max_dp" in gate:
        reasons.insert(0, f"max |dp| {figures['max_dp']:.3g} > {gate['max_dp']:g}")
    return not reasons, reasons


def artifact_parity(gate_kind, variant, reference, outputs, labels, names, thresholds, gates=None, clusters=None):
    """The parity entry of one artifact: figures per output path, the path to use, the verdict.
    `gate_kind`: "exact" or "quantized" (the format's or TFLite variant's, from their tables). A quantized
    artifact also gets the non-inferiority test of its AUCs (`stats.noninferiority`, resampling `clusters`:
    the distinct held-out images, since rare classes' positives are repeated), reported beside the gate."""
    from keras_mamsf.export.litert import INT8
    from keras_mamsf.inference.runners import sigmoid

    gate = dict((gates or GATES)[gate_kind])
    paths = {"probs": compare(reference, outputs["probs"], labels, names, thresholds)}
    if variant == INT8:
        paths["logits"] = compare(reference, sigmoid(outputs["logits"]), labels, names, thresholds)
    verdicts = {name: check_gate(figures, gate) for name, figures in paths.items()}
    passing = [name for name, (ok, _) in verdicts.items() if ok]
    ranked = sorted(paths, key=lambda name: (paths[name]["macro_auc_drop"] or 0.0, paths[name]["max_dp"]))
    use = (passing and min(passing, key=ranked.index)) or ranked[0]
    entry = {
        "status": "passed" if passing else "failed",
        "gate": gate,
        "use_output": use,
        "failures": [] if passing else verdicts[use][1],
        "paths": paths,
    }
    if gate_kind == "quantized":
        from keras_mamsf.stats.noninferiority import auc_noninferiority

        scores = sigmoid(outputs["logits"]) if use == "logits" else outputs["probs"]
        test = auc_noninferiority(labels, reference, scores, clusters, names)
        if clusters is not None:
            test.update(resampling="distinct image", patients=None, distinct_images=test["patients"])
        entry["noninferiority"] = test
    return entry


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
