"""The parity gates' default bounds: plain numbers, so `mamsf --help` reads them without loading
the statistics (SciPy) that judge by them (`parity.py`)."""

# Default gates. float32 artifacts must reproduce the model: max |dp| <= 1e-4. Quantized ones pass
# that same bound, or else are judged on ranking: the macro AUC may drop 0.005, one class 0.02.
# (Below 1e-4 an AUC change only reorders near-ties: a barely trained model's probabilities can
# all lie within 1e-6 of each other, and float noise then moves its AUC by 0.05.)
GATES = {
    "exact": {"max_dp": 1e-4},
    "quantized": {"max_dp": 1e-4, "max_macro_auc_drop": 0.005, "max_class_auc_drop": 0.02},
}
