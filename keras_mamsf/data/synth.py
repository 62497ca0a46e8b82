"""A SYNTHETIC ChestX-ray14 in NIH's exact layout, for the demo and the tests.

    write_synthetic(root, images=512, size=128, seed=0)

writes `Data_Entry_2017_v2020.csv` (NIH's header, 11 fields a row), `train_val_list.txt` and
`test_list.txt` (patient-disjoint, about NIH's 77/23), and `images/*.png` (8-bit grayscale).
The images are drawn, not real: a body outline, two lung fields, a heart shadow, ribs,
diaphragm and noise; each patient has fixed anatomy over 1..6 follow-ups. Each of the 14
findings is a subtle, location-specific pattern (a small dense spot for Nodule, a larger one
for Mass, fluid at a lung base for Effusion, a dark rim without markings for Pneumothorax, a
wider heart for Cardiomegaly, ...); Infiltration, Consolidation and Pneumonia are patchy
opacities of similar look in overlapping places, as in real films. Label sets follow the
real per-label frequencies (about 54% No Finding, Hernia about 0.2%) with co-occurrence.
"""

import os

import numpy as np

from keras_mamsf.data.nih import LIST_NAMES
from keras_mamsf.labels import (
    CHESTXRAY14_COUNTS,
    CHESTXRAY14_IMAGES,
    CHESTXRAY14_INDEX,
    CHESTXRAY14_LABELS,
    CHESTXRAY14_NO_FINDING,
)
from keras_mamsf.utils import atomic_path, write_text_atomic

CSV_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
SYNTHETIC_NOTE = "SYNTHETIC ChestX-ray14-layout data written by `mamsf synth` (drawn images, not chest X-rays)"
MARKER_NAME = "SYNTHETIC.txt"


def is_synthetic(root):
    """Whether `root` was written by `write_synthetic` (it leaves `SYNTHETIC.txt`): reports then say so."""
    return os.path.isfile(os.path.join(os.fspath(root), MARKER_NAME))
# Findings that tend to appear together (the real data's strongest pairs), as (a, b, P(b | a) boost).
CO_OCCURRENCE = (("Effusion", "Atelectasis", 0.25), ("Infiltration", "Effusion", 0.15),
                 ("Pneumonia", "Infiltration", 0.35), ("Edema", "Effusion", 0.3), ("Mass", "Nodule", 0.15),
                 ("Consolidation", "Effusion", 0.2), ("Emphysema", "Pneumothorax", 0.15))
FINDING_CONTRAST = 28.0


def draw_label_sets(images, rng):
    """`(images, 14)` 0/1 labels with ChestX-ray14's marginals (before the co-occurrence boost) and no-finding rate."""
    marginal = np.asarray(CHESTXRAY14_COUNTS, dtype="float64") / CHESTXRAY14_IMAGES
    p_finding = 1.0 - CHESTXRAY14_NO_FINDING / CHESTXRAY14_IMAGES
    # Draw findings independently given "some finding"; the boosted pairs add co-occurrence,
    # so the independent part is lowered to keep each label's marginal near the real one.
    boost = np.zeros_like(marginal)
    for a, b, p in CO_OCCURRENCE:
        boost[CHESTXRAY14_INDEX[b]] += p * marginal[CHESTXRAY14_INDEX[a]]
    conditional = np.clip((marginal - boost) / p_finding, 0.0, 1.0)
    labels = np.zeros((images, len(marginal)), dtype="float32")
    for row in np.flatnonzero(rng.random(images) < p_finding):
        drawn = rng.random(len(marginal)) < conditional
        for a, b, p in CO_OCCURRENCE:
            if drawn[CHESTXRAY14_INDEX[a]] and rng.random() < p:
                drawn[CHESTXRAY14_INDEX[b]] = True
        if not drawn.any():
            drawn[rng.choice(len(marginal), p=conditional / conditional.sum())] = True
        labels[row] = drawn
    return labels


def _patients(images, rng):
    """Patient id per image: 1..6 follow-ups each (geometric, like NIH's long-tailed follow-up counts)."""
    ids, patient = [], 0
    while len(ids) < images:
        patient += 1
        ids += [patient] * int(min(rng.geometric(0.45), 6))
    return np.asarray(ids[:images])


def _anatomy(rng):
    return {
        "body": rng.uniform(0.40, 0.46), "lung_w": rng.uniform(0.15, 0.18), "lung_h": rng.uniform(0.27, 0.32),
        "lung_y": rng.uniform(0.42, 0.47), "gap": rng.uniform(0.19, 0.22), "heart": rng.uniform(0.10, 0.12),
        "rib": rng.uniform(0.055, 0.07), "brightness": rng.uniform(150, 185), "tilt": rng.uniform(-0.02, 0.02),
    }


def render(anatomy, labels, size, rng, contrast=FINDING_CONTRAST):
    """One 8-bit grayscale image (size, size) of the drawn chest with the findings in `labels`."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    a = dict(anatomy)
    shift_x, shift_y = rng.normal(0, 0.008, size=2) + (a["tilt"], 0)
    xx, yy = xx - shift_x, yy - shift_y
    has = {name: bool(labels[i]) for name, i in CHESTXRAY14_INDEX.items()}
    if has["Emphysema"]:  # hyperinflated: bigger, darker lungs, flat diaphragm
        a["lung_h"] *= 1.12
        a["lung_w"] *= 1.06
    heart_w = a["heart"] * (1.45 if has["Cardiomegaly"] else 1.0)

    def ellipse(cx, cy, rx, ry, soft=0.015):
        d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        return np.clip((1.0 - d) / (soft / min(rx, ry)), 0.0, 1.0)

    def blob(cx, cy, r):
        return np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))

    image = 25.0 + a["brightness"] * ellipse(0.5, 0.52, a["body"], 0.5)  # soft tissue
    lungs = [ellipse(0.5 + s * a["gap"], a["lung_y"], a["lung_w"], a["lung_h"]) for s in (-1, 1)]
    lung = np.maximum(*lungs)
    darkness = 0.72 if has["Emphysema"] else 0.62
    image *= 1.0 - darkness * lung
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (yy - 0.25 * (xx - 0.5) ** 2) / a["rib"])
    image += 18.0 * lung * ribs ** 4  # rib shadows over the lungs
    markings = rng.normal(0, 1, size=(size // 4 + 1, size // 4 + 1))
    markings = np.kron(markings, np.ones((4, 4)))[:size, :size]
    heart = ellipse(0.53, 0.6, heart_w, 0.12)
    image = np.maximum(image, (a["brightness"] * 0.85) * heart)
    image = np.maximum(image, a["brightness"] * 0.9 * ellipse(0.5, 0.93 if not has["Emphysema"] else 0.97, 0.46, 0.14))

    strength = contrast
    left, right = 0.5 - a["gap"], 0.5 + a["gap"]
    side = left if rng.random() < 0.5 else right
    if has["Nodule"]:
        image += strength * 1.3 * blob(side + rng.normal(0, 0.03), a["lung_y"] - 0.05 + rng.normal(0, 0.03), 0.012)
    if has["Mass"]:
        image += strength * 1.1 * blob(side + rng.normal(0, 0.02), a["lung_y"] + rng.normal(0, 0.04), 0.035)
    if has["Effusion"]:  # fluid at the lung base with a meniscus
        base = a["lung_y"] + a["lung_h"] * 0.65
        image += strength * 1.2 * lung * np.clip((yy - base - 0.08 * np.abs(xx - side)) / 0.03, 0, 1)
    if has["Atelectasis"]:  # a dense horizontal band low in one lung
        image += strength * lung * np.exp(-(((yy - a["lung_y"] - 0.12) / 0.012) ** 2)) * (np.abs(xx - side) < 0.12)
    patchy = np.clip(markings, 0, None) * lung
    if has["Infiltration"]:
        image += strength * 0.9 * patchy * blob(side, a["lung_y"], 0.09)
    if has["Pneumonia"]:
        image += strength * 0.9 * patchy * blob(side, a["lung_y"] + 0.08, 0.08)
    if has["Consolidation"]:
        image += strength * 1.1 * lung * blob(side, a["lung_y"] + 0.06, 0.06)
    if has["Edema"]:  # bilateral perihilar haze
        image += strength * 0.8 * lung * (blob(left + 0.05, a["lung_y"], 0.07) + blob(right - 0.05, a["lung_y"], 0.07))
    if has["Fibrosis"]:  # fine reticular lines, peripheral and lower
        net = (np.abs(np.sin(60 * xx + 7 * yy)) > 0.93) | (np.abs(np.sin(55 * yy - 5 * xx)) > 0.93)
        image += strength * 0.8 * lung * net * (yy > a["lung_y"])
    if has["Pleural_Thickening"]:  # a bright rim along the lateral chest wall
        rim = np.abs(np.abs(xx - 0.5) - (a["gap"] + a["lung_w"] * 0.95)) < 0.012
        image += strength * rim * (np.abs(yy - a["lung_y"]) < a["lung_h"] * 0.7)
    if has["Pneumothorax"]:  # a dark apical cap without markings, with a thin pleural line
        cap = ellipse(side, a["lung_y"] - a["lung_h"] * 0.65, a["lung_w"] * 0.9, a["lung_h"] * 0.35)
        image -= strength * 0.9 * cap
        image += strength * 0.8 * (np.abs(cap - 0.5) < 0.08)
    if has["Hernia"]:  # a round density behind the heart, low in the middle
        image += strength * 1.3 * blob(0.5, 0.72, 0.04)
    if has["Emphysema"]:  # hyperlucent lungs: besides the larger, darker fields drawn above
        image -= strength * 0.4 * lung
    image += rng.normal(0, 12.0, size=image.shape)
    return np.clip(image, 0, 255).astype("uint8")


def write_synthetic(root, images=512, size=128, seed=0, test_fraction=0.23, contrast=FINDING_CONTRAST):
    """Writes the dataset; returns a summary `{"images", "patients", "labels", "no_finding", ...}`."""
    if images < 2 or size < 32:
        raise ValueError(f"mamsf synth needs --images >= 2 and --size >= 32, got {images} and {size}")
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    labels = draw_label_sets(images, rng)
    patients = _patients(images, rng)
    anatomy = {p: _anatomy(rng) for p in np.unique(patients)}
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows, names, follow_up = [], [], {}
    for index in range(images):
        patient = int(patients[index])
        visit = follow_up.get(patient, 0)
        follow_up[patient] = visit + 1
        name = f"{patient:08d}_{visit:03d}.png"
        pixels = render(anatomy[patient], labels[index], size, rng, contrast)
        with atomic_path(os.path.join(root, "images", name)) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(tf.io.encode_png(pixels[..., None]).numpy())
        findings = "|".join(n for n, v in zip(CHESTXRAY14_LABELS, labels[index]) if v) or "No Finding"
        view = "PA" if rng.random() < 0.6 else "AP"
        age = int(np.clip(rng.normal(47, 17), 1, 95))
        sex = "M" if anatomy[patient]["body"] > 0.43 else "F"
        rows.append(f"{name},{findings},{visit},{patient},{age},{sex},{view},{size},{size},0.143,0.143")
        names.append(name)
    write_text_atomic(os.path.join(root, "Data_Entry_2017_v2020.csv"), CSV_HEADER + "\n" + "\n".join(rows) + "\n")
    unique = np.unique(patients)
    test_patients = set(rng.choice(unique, size=max(1, int(round(test_fraction * len(unique)))), replace=False))
    test = [n for n, p in zip(names, patients) if p in test_patients]
    train_val = [n for n, p in zip(names, patients) if p not in test_patients]
    write_text_atomic(os.path.join(root, LIST_NAMES["train_val"]), "\n".join(train_val) + "\n")
    write_text_atomic(os.path.join(root, LIST_NAMES["test"]), "\n".join(test) + "\n")
    write_text_atomic(os.path.join(root, MARKER_NAME),
                      SYNTHETIC_NOTE + f"; seed {seed}, {images} images, {size} px, finding contrast {contrast:g}\n")
    return {
        "data": SYNTHETIC_NOTE,
        "root": root,
        "images": images,
        "patients": int(len(unique)),
        "size": size,
        "contrast": contrast,
        "no_finding": int((labels.sum(axis=1) == 0).sum()),
        "labels": {n: int(v) for n, v in zip(CHESTXRAY14_LABELS, labels.sum(axis=0))},
        "splits": {"train_val": len(train_val), "test": len(test)},
    }
