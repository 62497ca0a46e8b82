"""Statistics on scores, below both evaluation and export (one implementation of each):

- `ranking`: ROC AUC and average precision for many resamples at once;
- `metrics`: the plain per-class AUC;
- `bootstrap`: patient (cluster) resampling, percentile intervals, two-sided p-values;
- `delong`: DeLong's paired AUC test and Holm's correction;
- `thresholds`: operating thresholds (Youden, F1, sensitivity >= S) and the tallies at them;
- `calibration`: reliability bins and the expected calibration error.

NumPy, SciPy and scikit-learn only: nothing here imports Keras or TensorFlow.
"""
