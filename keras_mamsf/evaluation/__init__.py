"""The evidence layer: per-class metrics with patient-level confidence intervals, paired tests,
operating thresholds, calibration, reports.

- `Predictions` (predictions.py): the NPZ exchange format (`y_true`, `y_score`, `patient_id`,
  `image_index`, `labels`).
- `evaluate_predictions` / `compare_predictions` (evaluate.py): the `metrics.json` and
  `compare --json` dicts.
- Building blocks, in `keras_mamsf.stats` (shared with export): `ranking` (AUC / AP for many
  resamples at once), `bootstrap` (patient or image resampling, percentile intervals), `delong`
  (DeLong's paired test, Holm), `thresholds` (Youden / F1 / sensitivity >= S), `calibration` (ECE,
  reliability bins), `per_class_auc` (the plain per-class AUC that export parity uses).
- `report` (reports and plots) imports matplotlib; nothing here imports TensorFlow.
"""

from keras_mamsf.evaluation.evaluate import compare_predictions, evaluate_predictions
from keras_mamsf.evaluation.predictions import (
           Predictions,
           PredictionsError,
           check_same_images,
)
from keras_mamsf.stats.metrics import per_class_auc

__all__ = ["Predictions", "PredictionsError", "check_same_images", "compare_predictions", "evaluate_predictions",
           "per_class_auc"]
