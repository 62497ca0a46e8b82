"""`MacroAUC`: the validation figure of a multi-label run, without the classes it cannot score."""

import keras
from keras import ops

# Scores are binned evenly in logit over [-LOGIT_RANGE, LOGIT_RANGE], not evenly in probability: rare
# findings live at probabilities of 1e-3..1e-1, where bins evenly spaced in probability put every
# image into the same one and read AUC 0.5.
LOGIT_RANGE = 9.0


@keras.saving.register_keras_serializable(package="keras_mamsf")
class MacroAUC(keras.metrics.AUC):
    """ROC AUC per class, averaged over the classes with at least one positive and one negative
    among the images seen (Keras' `AUC(multi_label=True)` averages every class, and a class with no
    positive in the validation batch then counts with a meaningless value).

    A streaming, threshold-binned approximation (bins evenly spaced in logit over [-9, 9]), so it
    runs inside `fit` and `evaluate` on every backend; `keras_mamsf.evaluation` gives the exact
    figure with confidence intervals.

    Args:
        num_labels: number of classes (14 for ChestX-ray14).
        num_thresholds: bins (default 400).
        name: metric name (`val_macro_auc` in the logs of a validation pass).

    Example:
        model.compile(optimizer="adamw", loss=loss, metrics=[mamsf.training.MacroAUC(num_labels=14)])
    """

    def __init__(self, num_labels=None, num_thresholds=400, name="macro_auc", dtype=None):
        # Evenly spaced thresholds over a monotone transform of the score rather than explicit
        # thresholds: the AUC is unchanged by it, and Keras 3.15's explicit-threshold path fails
        # under JAX's jit (a traced value reaches numpy in update_confusion_matrix_variables).
        super().__init__(num_thresholds=num_thresholds, multi_label=True, num_labels=num_labels, name=name,
                         dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        logit = ops.log(p) - ops.log(1.0 - p)
        stretched = ops.clip((logit + LOGIT_RANGE) / (2.0 * LOGIT_RANGE), 0.0, 1.0)
        return super().update_state(y_true, stretched, sample_weight=sample_weight)

    def result(self):
        recall = ops.divide_no_nan(self.true_positives, ops.add(self.true_positives, self.false_negatives))
        fp_rate = ops.divide_no_nan(self.false_positives, ops.add(self.false_positives, self.true_negatives))
        heights = ops.divide(ops.add(recall[:-1], recall[1:]), 2.0)
        by_label = ops.sum(ops.multiply(ops.subtract(fp_rate[:-1], fp_rate[1:]), heights), axis=0)
        # Row 0 is the lowest threshold (everything called positive): its counts are the class totals.
        positives = ops.add(self.true_positives[0], self.false_negatives[0])
        negatives = ops.add(self.true_negatives[0], self.false_positives[0])
        scorable = ops.cast(ops.logical_and(positives > 0, negatives > 0), by_label.dtype)
        return ops.divide_no_nan(ops.sum(ops.multiply(by_label, scorable)), ops.sum(scorable))

    def get_config(self):
        return {"num_labels": self.num_labels, "num_thresholds": self.num_thresholds, "name": self.name,
                "dtype": self.dtype}
