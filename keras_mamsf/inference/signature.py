"""The serving signature every artifact has: one input, three outputs (no Keras import here, so the
runners load without it). `ood_score` (the out-of-distribution guard, `keras_mamsf.guard`) is absent
from artifacts exported before 0.3 and from a `.keras` file without a guard beside it."""

SIGNATURE = "serve"
INPUT_NAME = "image"
OUTPUT_NAMES = ("probs", "logits", "ood_score")
OOD_OUTPUT = "ood_score"
