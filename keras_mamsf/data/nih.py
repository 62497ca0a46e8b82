"""Reader for ChestX-ray14 as NIH ships it: the Data_Entry CSV, the split lists, the PNG folders.

    index = read_nih(root, on_bad_image="error")   # -> NihIndex
    index.records        # [Record(image, path, labels(14,), patient, follow_up, view, age, sex), ...]
    index.lists          # {"train_val": [...names], "test": [...]} where the list files exist
    index.skipped        # {"missing image": n, "not a PNG": n, "above the pixel limit": n}: what
                         # --on-bad-image=skip left out

Every bad input is a one-line `DataError` naming the file (and line) and what to do. With
`on_bad_image="skip"`, images that are missing, not PNG files, or declare more pixels than
`keras_mamsf.data.images.MAX_IMAGE_PIXELS` (decompression bombs) are left out and counted in
`skipped`; nothing else is ever dropped. A name that would resolve outside the data root
(`../`, an absolute path, a link out of the root) is always an error.
"""

import csv
import dataclasses
import os

import numpy as np

from keras_mamsf.data.images import pixel_limit_excess
from keras_mamsf.labels import CHESTXRAY14_INDEX, CHESTXRAY14_LABELS

CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
LIST_NAMES = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
NO_FINDING = "No Finding"
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
OPTIONAL_COLUMNS = ("Follow-up #", "Patient Age", "Patient Gender", "View Position")
ON_BAD_IMAGE = ("error", "skip")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DataError(ValueError):
    """A bad dataset file or row; the message is one line and says what to do."""


@dataclasses.dataclass(frozen=True)
class Record:
    image: str
    labels: np.ndarray  # float32 (14,), CHESTXRAY14_LABELS order
    patient: str
    follow_up: int = 0
    view: str = ""
    age: int = -1
    sex: str = ""
    path: str = ""  # absolute path of the PNG ("" when read from the CSV alone)


@dataclasses.dataclass
class NihIndex:
    root: str
    csv_path: str
    records: list
    lists: dict
    skipped: dict  # {reason: count}
    skipped_names: list = dataclasses.field(default_factory=list)  # the skipped images, in CSV order

    def labels(self):
        return np.stack([r.labels for r in self.records]) if self.records else np.zeros((0, 14), "float32")


def find_csv(root):
    for name in CSV_NAMES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"{root}: no {' or '.join(CSV_NAMES)} found; point --data at the folder NIH's files were unpacked "
                    f"to")


def read_metadata(csv_path):
    """Records from a Data_Entry CSV alone (both the 2017 and the v2020 variants)."""
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: no such file")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            raise DataError(f"{csv_path}: empty file; expected the Data_Entry header line")
        columns = _column_positions(csv_path, header)
        records, seen = [], {}
        for line, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(columns[name] for name in REQUIRED_COLUMNS):
                raise DataError(f"{csv_path}:{line}: {len(row)} fields, expected {len(header)}; is the row cut short?")
            record = _parse_row(csv_path, line, row, columns)
            if record.image in seen:
                raise DataError(
                    f"{csv_path}:{line}: duplicate image {record.image} (first at line {seen[record.image]}); "
                    "remove one of the rows"
                )
            seen[record.image] = line
            records.append(record)
    return records


def _column_positions(csv_path, header):
    names = [cell.strip() for cell in header]
    positions = {}
    for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        if name in names:
            positions[name] = names.index(name)
        elif name in REQUIRED_COLUMNS:
            raise DataError(f"{csv_path}: missing column {name!r}; the header must start like NIH's: "
                            "Image Index,Finding Labels,Follow-up #,Patient ID,...")
    return positions


def _parse_row(csv_path, line, row, columns):
    def cell(name, default=""):
        position = columns.get(name)
        return row[position].strip() if position is not None and position < len(row) else default

    image = cell("Image Index")
    if not image:
        raise DataError(f"{csv_path}:{line}: empty 'Image Index'")
    check_plain_name(image, f"{csv_path}:{line}")
    findings = [f.strip() for f in cell("Finding Labels").split("|") if f.strip()]
    if not findings:
        raise DataError(f"{csv_path}:{line}: empty 'Finding Labels' for {image}; use 'No Finding' for a normal image")
    labels = np.zeros(len(CHESTXRAY14_LABELS), dtype="float32")
    for finding in findings:
        if finding == NO_FINDING:
            if len(findings) > 1:
                raise DataError(f"{csv_path}:{line}: {image} lists 'No Finding' together with findings: "
                                f"{'|'.join(findings)}")
            continue
        if finding not in CHESTXRAY14_INDEX:
            raise DataError(
                f"{csv_path}:{line}: unknown label {finding!r} for {image}; "
                f"known: {', '.join(CHESTXRAY14_LABELS)}, No Finding"
            )
        labels[CHESTXRAY14_INDEX[finding]] = 1.0
    patient = cell("Patient ID")
    if not patient:
        raise DataError(f"{csv_path}:{line}: empty 'Patient ID' for {image}")
    return Record(
        image=image,
        labels=labels,
        patient=patient.lstrip("0") or "0",
        follow_up=_int(cell("Follow-up #"), -1),
        view=cell("View Position").upper(),
        age=_age(cell("Patient Age")),
        sex=cell("Patient Gender").upper(),
    )


def _int(text, default):
    try:
        return int(text)
    except ValueError:
        return default


def _age(text):
    # v2020: "58"; older releases of the 2017 file: "058Y" (also "M"/"D" for months/days).
    if text[-1:].upper() in ("Y", "M", "D") and text[:-1].isdigit():
        return int(text[:-1]) if text[-1].upper() == "Y" else 0
    return _int(text, -1)


def read_list(path):
    """Image names of a split list file, one per line (blank lines ignored)."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def find_images(root):
    """`{name: absolute path}` for `images/*.png` and `images_NNN/images/*.png` under `root`."""
    found = {}
    folders = [os.path.join(root, "images")]
    folders += sorted(
        os.path.join(root, entry, "images")
        for entry in os.listdir(root)
        if entry.startswith("images_") and os.path.isdir(os.path.join(root, entry, "images"))
    )
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(".png"):
                    found.setdefault(entry.name, entry.path)
    return found


def check_plain_name(name, where):
    """Image names are plain file names: no folders, no `..`, not absolute (they must stay in the root)."""
    if os.path.isabs(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{where}: image {name!r} is not a plain file name; names must stay inside the data root")


def check_inside(root, path):
    """Refuse a file that resolves outside the data root (a link pointing out of it)."""
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(path), real_root]) != real_root:
        raise DataError(f"{path}: resolves outside the data root {root} (a link?); copy the image into the root")


def is_png(path):
    try:
        with open(path, "rb") as handle:
            head = handle.read(33)
    except OSError:
        return False
    # The signature, then the IHDR chunk with a non-zero width and height.
    return (
        len(head) == 33 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
        and int.from_bytes(head[16:20], "big") > 0 and int.from_bytes(head[20:24], "big") > 0
    )


def is_decodable_png(path):
    """Whether TensorFlow decodes the whole file (slow: a full decode)."""
    import tensorflow as tf

    try:
        tf.io.decode_png(tf.io.read_file(path), channels=1)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError):
        return False
    return True


def read_nih(root, on_bad_image="error", verify="header"):
    """The whole NIH layout under `root` (see the module docstring).

    `verify`: "header" checks each PNG's signature and header (fast, the default), "decode"
    decodes every image (catches truncated files; about 100 images/s per core at 1024 px).
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
    if verify not in ("header", "decode"):
        raise ValueError(f"verify must be 'header' or 'decode', got {verify!r}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder; point --data at the ChestX-ray14 root (or run `mamsf synth`)")
    csv_path = find_csv(root)
    records = read_metadata(csv_path)
    images = find_images(root)
    kept, skipped, skipped_names = [], {}, []
    for record in records:
        path = images.get(record.image)
        reason = excess = None
        if path is None:
            reason = "missing image"
        else:
            check_inside(root, path)
            if not is_png(path):
                reason = "not a PNG"
            elif excess := pixel_limit_excess(path):  # before a decode: a bomb would take gigabytes
                reason = "above the pixel limit"
            elif verify == "decode" and not is_decodable_png(path):
                reason = "not a PNG"
        if reason is not None:
            if on_bad_image == "error":
                where = {"missing image": "not found under images/ or images_*/images/",
                         "not a PNG": "not a decodable PNG file"}.get(reason) or excess
                raise DataError(
                    f"{os.path.join(root, 'images', record.image)}: {where} (listed in {os.path.basename(csv_path)}); "
                    "restore it or pass --on-bad-image=skip to leave it out and count it"
                )
            skipped[reason] = skipped.get(reason, 0) + 1
            skipped_names.append(record.image)
            continue
        kept.append(dataclasses.replace(record, path=path))
    lists = {}
    known = {r.image for r in records}
    for split, name in LIST_NAMES.items():
        path = os.path.join(root, name)
        if os.path.isfile(path):
            names = read_list(path)
            unknown = [n for n in names if n not in known]
            if unknown:
                raise DataError(
                    f"{path}: {len(unknown)} name(s) not in {os.path.basename(csv_path)}, first {unknown[0]!r}; "
                    "the list and the CSV must come from the same release"
                )
            lists[split] = names
    return NihIndex(root=root, csv_path=csv_path, records=kept, lists=lists, skipped=skipped,
                    skipped_names=skipped_names)
