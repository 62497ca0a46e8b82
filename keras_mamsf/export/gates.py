"""The parity gates' default bounds (`parity.py` judges by them; `mamsf export --help` shows them).

float32 artifacts (SavedModel, float32 TFLite, ONNX) must reproduce the model: max |dp| <= 1e-4.
Quantized ones pass that same bound, or else the non-inferiority test of their AUCs on the parity set
(`stats.noninferiority`: the validation split, patients resampled): the one-sided 95% lower bound of
the AUC change of every judged class, and of the macro, above -margin; a class with fewer than
`min_positives` positives is not judged (one image changing rank moves its AUC by more than the margin).
"""

from keras_mamsf.stats.noninferiority import CONFIDENCE, MARGIN, MIN_POSITIVES, N_BOOT

GATES = {
    "exact": {"max_dp": 1e-4},
    "quantized": {"max_dp": 1e-4, "margin": MARGIN, "min_positives": MIN_POSITIVES, "confidence": CONFIDENCE,
                  "n_boot": N_BOOT},
}
