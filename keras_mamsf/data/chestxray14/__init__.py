"""The TFDS builder for ChestX-ray14 (manual download: the NIH layout under a root folder)."""
