"""The 14 ChestX-ray14 findings, in the order every model output and file uses."""

CHESTXRAY14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
CHESTXRAY14_INDEX = {name: column for column, name in enumerate(CHESTXRAY14_LABELS)}

# Positives per label over all 112,120 ChestX-ray14 images (30,805 patients), in the order above.
CHESTXRAY14_COUNTS = (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516, 1686, 3385, 227)
CHESTXRAY14_IMAGES = 112120
CHESTXRAY14_NO_FINDING = 60361
