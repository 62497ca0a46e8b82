"""The serving signature every artifact has: one input, two outputs (no Keras import here, so the
runners load without it)."""

SIGNATURE = "serve"
INPUT_NAME = "image"
OUTPUT_NAMES = ("probs", "logits")
