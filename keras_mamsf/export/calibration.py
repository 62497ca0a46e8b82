"""Images for int8 calibration (training split) and for parity checks (held-out split).

Both come from a dataset root in the NIH layout (through the official, patient-disjoint split)
or from a folder of prepared shards (`mamsf prepare`), through the same decode and area resize
as training. `select_images` picks a class-covering sample: positives of every class first (a
class with fewer positives than its quota has them repeated, so rare findings weigh in the
calibrated ranges), then images drawn at random (normals included) up to `count`.
"""

import numpy as np

from keras_mamsf.data.sources import dataset_arrays, open_root


def select_images(labels, count, seed=0):
    """Indices (with repeats for rare classes) of a seeded, class-covering sample of `labels`."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("no images to choose from: the split is empty")
    rng = np.random.default_rng(seed)
    classes = labels.shape[1]
    quota = max(1, count // (2 * classes))
    chosen = []
    for column in range(classes):
        positives = np.flatnonzero(labels[:, column] > 0)
        if len(positives):
            chosen.extend(rng.choice(positives, size=quota, replace=len(positives) < quota).tolist())
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    missing = max(0, count - len(chosen))
    chosen.extend(rng.choice(rest, size=min(missing, len(rest)), replace=False).tolist())
    return np.asarray(chosen[:count] if len(chosen) > count else chosen, dtype="int64")


def load_images(root, split, image_size, channels=3, count=300, seed=0, source=None):
    """`(images float32 (N, S, S, channels) 0..255, labels (N, 14), source)` from `root`'s `split` (`source`:
    `root` already opened, e.g. with a run's split settings)."""
    source = source or open_root(root)
    split_labels = source.labels(split, image_size)
    chosen = select_images(split_labels, count, seed)
    unique = np.unique(chosen)
    images, labels = dataset_arrays(source.dataset(split, image_size, 64, channels=channels, indices=unique))
    position = {int(v): k for k, v in enumerate(unique)}
    order = [position[int(i)] for i in chosen]
    repeated = "; rare classes' positives repeated" if len(unique) < len(chosen) else ""
    return images[order], labels[order], (f"{root} ({source.describe(split, image_size)}: {len(unique)} distinct of "
                                          f"its {len(split_labels)} images{repeated})")


def int8_calibration(root, image_size, channels, count=300, seed=0, source=None):
    """The images an int8 conversion is calibrated on: `load_images`' training films of `root`, then the OOD
    guard's anchor images (`guard.ood_guard.calibration_anchors`), so that the guard's int8 ranges reach the images
    it must flag. `{"images", "films" (how many of them come first), "source" (one line)}`."""
    from keras_mamsf.guard.ood_guard import calibration_anchors

    films, _, described = load_images(root, "train", image_size, channels, count, seed, source=source)
    anchors = calibration_anchors(image_size, channels, seed)
    return {"images": np.concatenate([films, anchors]), "films": len(films),
            "source": described + (f"; + {len(anchors)} images the OOD guard must flag (black, white, grey, 2 "
                                   "uniform noise), so that its int8 ranges reach them")}
