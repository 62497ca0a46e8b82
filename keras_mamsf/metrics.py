"""Per-class ROC AUC (scikit-learn), with classes that cannot be scored counted, not dropped."""

import numpy as np
from sklearn.metrics import roc_auc_score


def per_class_auc(labels, probs, names):
    """`{"per_class": {name: {"auc", "positives"}}, "macro", "classes_scored", "classes_unscored"}`.

    A class whose evaluation labels are all 0 or all 1 has no AUC: it gets `None` and is
    listed in `classes_unscored`; `macro` averages the scored classes only.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.shape != probs.shape or labels.shape[1] != len(names):
        raise ValueError(f"labels {labels.shape}, probabilities {probs.shape} and {len(names)} names do not match")
    per_class, unscored = {}, []
    for index, name in enumerate(names):
        column = labels[:, index]
        positives = int(column.sum())
        if 0 < positives < len(column):
            score = float(roc_auc_score(column, probs[:, index]))
        else:
            score = None
            unscored.append(name)
        per_class[name] = {"auc": score, "positives": positives}
    scored = [entry["auc"] for entry in per_class.values() if entry["auc"] is not None]
    return {
        "per_class": per_class,
        "macro": float(np.mean(scored)) if scored else None,
        "classes_scored": len(scored),
        "classes_unscored": unscored,
    }
