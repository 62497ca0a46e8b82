"""Patient-disjoint splits of ChestX-ray14 records, and the leak check that guards them.

- `official_split`: NIH's `test_list.txt` is the test split; a seeded fraction of the
  *patients* in `train_val_list.txt` becomes "val", the rest "train".
- `patient_split`: a seeded random split by patient (CheXNet-style 70/10/20 by default).
- `leak_check`: how many patients have images in more than one split (must be 0).
- `filter_view`: "all", "PA" or "AP".

Splitting by image instead of patient puts follow-ups of one patient on both sides and
inflates test AUC; every split here is by patient and `make_splits` refuses a leaking one.
"""

import numpy as np

VIEWS = ("all", "PA", "AP")
SPLIT_METHODS = ("official", "patient")


class SplitError(ValueError):
    """Splits that cannot be made or that leak patients; one line."""


def filter_view(records, view="all"):
    if view not in VIEWS:
        raise SplitError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
    return list(records) if view == "all" else [r for r in records if r.view == view]


def official_split(records, lists, val_fraction=0.1, seed=0):
    """`{"train", "val", "test"}` from NIH's lists; val = a seeded fraction of train_val patients."""
    missing = [name for name in ("train_val", "test") if name not in lists]
    if missing:
        raise SplitError(
            f"the official split needs train_val_list.txt and test_list.txt (missing: {', '.join(missing)}); "
            "use --split patient for a random patient-wise split"
        )
    if not 0.0 <= val_fraction < 1.0:
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    test_names = set(lists["test"])
    train_val_names = set(lists["train_val"])
    test = [r for r in records if r.image in test_names]
    train_val = [r for r in records if r.image in train_val_names]
    val_patients = _choose_patients(sorted({r.patient for r in train_val}), val_fraction, seed)
    return {
        "train": [r for r in train_val if r.patient not in val_patients],
        "val": [r for r in train_val if r.patient in val_patients],
        "test": test,
    }


def patient_split(records, fractions=(0.7, 0.1, 0.2), seed=0):
    """`{"train", "val", "test"}` drawn by patient with the given fractions (of patients)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise SplitError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    patients = sorted({r.patient for r in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    cut_train = int(round(fractions[0] * len(patients)))
    cut_val = cut_train + int(round(fractions[1] * len(patients)))
    assignment = {}
    for rank, index in enumerate(order):
        assignment[patients[index]] = "train" if rank < cut_train else "val" if rank < cut_val else "test"
    splits = {"train": [], "val": [], "test": []}
    for record in records:
        splits[assignment[record.patient]].append(record)
    return splits


def leak_check(splits):
    """`{"ok": bool, "patients_in_several_splits": n}` over all pairs of splits."""
    seen = {}
    for name, records in splits.items():
        for record in records:
            seen.setdefault(record.patient, set()).add(name)
    crossing = sum(1 for names in seen.values() if len(names) > 1)
    return {"ok": crossing == 0, "patients_in_several_splits": crossing}


def make_splits(records, lists=None, method="official", val_fraction=0.1, seed=0, view="all"):
    """The splits a training run uses; raises `SplitError` if any patient crosses splits."""
    if method not in SPLIT_METHODS:
        raise SplitError(f"unknown split {method!r}: choose one of {', '.join(SPLIT_METHODS)}")
    records = filter_view(records, view)
    if method == "official":
        splits = official_split(records, lists or {}, val_fraction, seed)
    else:
        splits = patient_split(records, (0.7, 0.1, 0.2), seed)
    leak = leak_check(splits)
    if not leak["ok"]:
        raise SplitError(
            f"{leak['patients_in_several_splits']} patient(s) have images in more than one split; "
            "the split lists do not match the CSV's patients (use --split patient to re-split by patient)"
        )
    return splits


def _choose_patients(patients, fraction, seed):
    count = int(round(fraction * len(patients)))
    chosen = np.random.default_rng(seed).choice(len(patients), size=count, replace=False) if count else []
    return {patients[i] for i in chosen}
