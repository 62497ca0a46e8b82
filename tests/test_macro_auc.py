"""`MacroAUC`: Keras' streaming AUC averaged over the scorable classes only."""

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from keras_mamsf.training import MacroAUC


def test_macro_auc_leaves_unscorable_classes_out_and_tracks_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((600, 4)) < [0.3, 0.1, 0.02, 0.0]).astype("float32")  # the last class: no positives
    p = (1 / (1 + np.exp(-(rng.normal(size=(600, 4)) + 1.5 * y - 4)))).astype("float32")  # small probabilities
    metric = MacroAUC(num_labels=4)
    for start in range(0, 600, 100):  # streaming over batches
        metric.update_state(y[start : start + 100], p[start : start + 100])
    exact = np.mean([roc_auc_score(y[:, c], p[:, c]) for c in range(3)])
    assert float(metric.result()) == pytest.approx(exact, abs=0.003)
    # Keras' own multi-label AUC counts the class without positives and lands far off.
    assert abs(float(keras.metrics.AUC(multi_label=True, num_labels=4)(y, p)) - exact) > 0.1
    assert MacroAUC.from_config(metric.get_config()).get_config() == metric.get_config()
