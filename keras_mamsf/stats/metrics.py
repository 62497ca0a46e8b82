"""Plain per-class ROC AUC (no intervals), with classes that cannot be scored counted, not dropped."""

import numpy as np

from keras_mamsf.stats.ranking import RankedScores, is_scorable


def per_class_auc(labels, probs, names):
    """`{"per_class": {name: {"auc", "positives"}}, "macro", "classes_scored", "classes_unscored"}`.

    A class whose evaluation labels are all 0 or all 1 has no AUC: it gets `None` and is
    listed in `classes_unscored`; `macro` averages the scored classes only. The AUC is the
    one `evaluate_predictions` reports (scikit-learn's `roc_auc_score`, tested to 1e-9).
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.shape != probs.shape or labels.shape[1] != len(names):
        raise ValueError(f"labels {labels.shape}, probabilities {probs.shape} and {len(names)} names do not match")
    per_class, unscored = {}, []
    everyone = np.arange(len(labels))
    for index, name in enumerate(names):
        column = labels[:, index]
        score = None
        if is_scorable(column):
            ranked = RankedScores(column, probs[:, index], everyone, len(labels))
            score = float(ranked.scores(np.ones((1, len(labels))))[0][0])
        else:
            unscored.append(name)
        per_class[name] = {"auc": score, "positives": int(column.sum())}
    scored = [entry["auc"] for entry in per_class.values() if entry["auc"] is not None]
    return {
        "per_class": per_class,
        "macro": float(np.mean(scored)) if scored else None,
        "classes_scored": len(scored),
        "classes_unscored": unscored,
    }
