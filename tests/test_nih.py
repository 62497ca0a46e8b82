"""Issue 4: the NIH-layout reader, its one-line errors and counted skips, splits and the leak check."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.data import nih, splits
from keras_mamsf.data.synth import CSV_HEADER, draw_label_sets, write_synthetic
from keras_mamsf.labels import (
    CHESTXRAY14_COUNTS,
    CHESTXRAY14_IMAGES,
    CHESTXRAY14_LABELS,
    CHESTXRAY14_NO_FINDING,
)

# Rows in NIH's format (the v2020 header; the 2017 file ends every line with a comma and has "058Y" ages).
ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,0.171,0.171",
    "00000003_000.png,Hernia,0,3,74,F,PA,2500,2048,0.168,0.168",
    "00000003_001.png,Hernia|Infiltration,1,3,75,F,AP,2048,2500,0.168,0.168",
    "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168",
]
HEADER_2017 = CSV_HEADER + ","


def write_csv(path, header=CSV_HEADER, rows=ROWS, trailing_comma=False):
    end = "," if trailing_comma else ""
    path.write_text(header + "\n" + "".join(row + end + "\n" for row in rows))
    return str(path)


def expected_counts(rows):
    counts = {name: 0 for name in CHESTXRAY14_LABELS}
    for row in rows:
        for finding in row.split(",")[1].split("|"):
            if finding != "No Finding":
                counts[finding] += 1
    return counts


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nih") / "root"
    summary = write_synthetic(str(root), images=60, size=32, seed=3)
    return root, summary


def copy_root(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root[0], root)
    return root


# -- the CSV alone -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["v2020", "2017"])
def test_inspect_metadata_reproduces_the_csv_counts(tmp_path, capsys, variant):
    if variant == "v2020":
        path = write_csv(tmp_path / "Data_Entry_2017_v2020.csv")
    else:
        rows = [r.replace(",57,", ",057Y,").replace(",58,", ",058Y,") for r in ROWS]
        path = write_csv(tmp_path / "Data_Entry_2017.csv", header=HEADER_2017, rows=rows, trailing_comma=True)
    assert main(["inspect", "--metadata", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and report["patients"] == 4 and report["no_finding"] == 1
    assert report["labels"] == expected_counts(ROWS)
    assert report["splits"] == {} and report["leak"] == {"ok": True, "patients_in_several_splits": 0}
    assert report["skipped"] == {}
    records = nih.read_metadata(path)
    assert [r.age for r in records[:2]] == [57, 58] and records[4].view == "AP" and records[0].patient == "1"


def test_metadata_view_filter(tmp_path, capsys):
    path = write_csv(tmp_path / "Data_Entry_2017_v2020.csv")
    assert main(["inspect", "--metadata", path, "--view", "AP", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and report["labels"]["Hernia"] == 1 and report["labels"]["Mass"] == 1


@pytest.mark.parametrize(
    "header, rows, message",
    [
        ("Image Index,Finding Labels,Follow-up #", ROWS[:1], "missing column 'Patient ID'"),
        (CSV_HEADER, [ROWS[0].replace("Cardiomegaly", "Cardiomegally")], ":2: unknown label 'Cardiomegally'"),
        (CSV_HEADER, [ROWS[0], ROWS[1], ROWS[0]], ":4: duplicate image 00000001_000.png (first at line 2)"),
        (CSV_HEADER, [ROWS[2].replace("No Finding", "No Finding|Mass")], "lists 'No Finding' together with findings"),
        (CSV_HEADER, ["../etc/passwd" + ROWS[0][16:]], "image '../etc/passwd' is not a plain file name"),
        (CSV_HEADER, ["00000001_000.png,Mass"], ":2: 2 fields, expected"),
    ],
)
def test_bad_csv_rows_give_one_line_errors(tmp_path, capsys, header, rows, message):
    path = write_csv(tmp_path / "Data_Entry_2017_v2020.csv", header=header, rows=rows)
    assert main(["inspect", "--metadata", path]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamsf inspect: error: ") and message in err and "\n" not in err, err


# -- the whole layout ----------------------------------------------------------------------
def test_reader_matches_the_synthetic_csv_and_lists(synthetic_root):
    root, summary = synthetic_root
    index = nih.read_nih(str(root))
    assert len(index.records) == summary["images"] == 60 and index.skipped == {}
    assert dict(zip(CHESTXRAY14_LABELS, index.labels().sum(axis=0).astype(int).tolist())) == summary["labels"]
    assert all(os.path.isfile(r.path) for r in index.records)
    assert len(index.lists["train_val"]) + len(index.lists["test"]) == 60


def test_inspect_data_splits_are_patient_disjoint(synthetic_root, capsys):
    root, summary = synthetic_root
    assert main(["inspect", "--data", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 60 and report["patients"] == summary["patients"]
    assert set(report["splits"]) == {"train", "val", "test"}
    assert sum(s["images"] for s in report["splits"].values()) == 60
    assert sum(s["patients"] for s in report["splits"].values()) == summary["patients"]  # nobody counted twice
    for name in CHESTXRAY14_LABELS:
        assert sum(s["labels"][name] for s in report["splits"].values()) == report["labels"][name]
    assert report["leak"] == {"ok": True, "patients_in_several_splits": 0}


def test_missing_and_broken_images_error_or_are_counted(synthetic_root, tmp_path, capsys):
    root = copy_root(synthetic_root, tmp_path)
    names = sorted(os.listdir(root / "images"))
    os.remove(root / "images" / names[0])
    (root / "images" / names[1]).write_bytes(b"not a png at all")
    with pytest.raises(nih.DataError, match=f"{names[0]}: not found under images/"):
        nih.read_nih(str(root))
    os.remove(root / "images" / names[2])
    index = nih.read_nih(str(root), on_bad_image="skip")
    assert index.skipped == {"missing image": 2, "not a PNG": 1} and len(index.records) == 57
    assert main(["inspect", "--data", str(root), "--on-bad-image", "skip", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == {"missing image": 2, "not a PNG": 1} and report["images"] == 57
    assert main(["inspect", "--data", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert "--on-bad-image=skip" in err and "\n" not in err


def test_a_link_out_of_the_root_is_refused(synthetic_root, tmp_path):
    root = copy_root(synthetic_root, tmp_path)
    name = sorted(os.listdir(root / "images"))[0]
    outside = tmp_path / "outside.png"
    shutil.move(str(root / "images" / name), outside)
    os.symlink(outside, root / "images" / name)
    with pytest.raises(nih.DataError, match="resolves outside the data root"):
        nih.read_nih(str(root))


def test_list_names_must_be_in_the_csv(synthetic_root, tmp_path):
    root = copy_root(synthetic_root, tmp_path)
    with open(root / "test_list.txt", "a") as handle:
        handle.write("99999999_000.png\n")
    with pytest.raises(nih.DataError, match="test_list.txt: 1 name.s. not in Data_Entry_2017_v2020.csv"):
        nih.read_nih(str(root))


def test_missing_root_and_csv_errors(tmp_path):
    with pytest.raises(nih.DataError, match="no such folder"):
        nih.read_nih(str(tmp_path / "nope"))
    with pytest.raises(nih.DataError, match="no Data_Entry_2017_v2020.csv or Data_Entry_2017.csv found"):
        nih.read_nih(str(tmp_path))


# -- splits ----------------------------------------------------------------------------------
def test_official_split_carves_val_by_patient(synthetic_root):
    index = nih.read_nih(str(synthetic_root[0]))
    parts = splits.make_splits(index.records, index.lists, "official", val_fraction=0.3, seed=1)
    assert {r.image for r in parts["test"]} == set(index.lists["test"])
    assert {r.image for r in parts["train"] + parts["val"]} == set(index.lists["train_val"])
    train_val_patients = {r.patient for r in parts["train"] + parts["val"]}
    assert len({r.patient for r in parts["val"]}) == round(0.3 * len(train_val_patients))
    assert splits.leak_check(parts) == {"ok": True, "patients_in_several_splits": 0}
    again = splits.make_splits(index.records, index.lists, "official", val_fraction=0.3, seed=1)
    assert [r.image for r in again["val"]] == [r.image for r in parts["val"]]  # seeded


def test_patient_split_fractions_and_views(synthetic_root):
    records = nih.read_nih(str(synthetic_root[0])).records
    parts = splits.make_splits(records, method="patient", seed=0)
    patients = {name: {r.patient for r in part} for name, part in parts.items()}
    total = sum(len(p) for p in patients.values())
    assert total == len({r.patient for r in records})
    assert abs(len(patients["train"]) / total - 0.7) < 0.05 and abs(len(patients["test"]) / total - 0.2) < 0.05
    pa = splits.make_splits(records, method="patient", view="PA")
    assert all(r.view == "PA" for part in pa.values() for r in part)


def test_leaking_lists_are_caught(synthetic_root, tmp_path, capsys):
    root = copy_root(synthetic_root, tmp_path)
    index = nih.read_nih(str(root))
    by_patient = {}
    for record in index.records:
        by_patient.setdefault(record.patient, []).append(record.image)
    shared = next(images for images in by_patient.values() if len(images) > 1)
    train_val = [n for n in index.lists["train_val"] if n != shared[0]]
    test = [n for n in index.lists["test"] if n not in shared] + [shared[0]]
    train_val += [n for n in shared[1:] if n not in train_val]
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    with pytest.raises(splits.SplitError, match="1 patient.s. have images in more than one split"):
        splits.make_splits(nih.read_nih(str(root)).records, nih.read_nih(str(root)).lists)
    assert main(["inspect", "--data", str(root), "--json"]) == 1  # reported, and a non-zero exit
    assert json.loads(capsys.readouterr().out)["leak"] == {"ok": False, "patients_in_several_splits": 1}


# -- the synthetic generator ------------------------------------------------------------------
def test_synthetic_label_frequencies_follow_chestxray14():
    labels = draw_label_sets(40000, np.random.default_rng(0))
    real = np.asarray(CHESTXRAY14_COUNTS) / CHESTXRAY14_IMAGES
    drawn = labels.mean(axis=0)
    np.testing.assert_allclose(drawn, real, rtol=0.2, atol=0.001)
    assert abs((labels.sum(axis=1) == 0).mean() - CHESTXRAY14_NO_FINDING / CHESTXRAY14_IMAGES) < 0.02
    assert 0.0005 < drawn[CHESTXRAY14_LABELS.index("Hernia")] < 0.004
    # co-occurrence: Pneumonia comes with Infiltration far more often than Infiltration's base rate
    pneumonia, infiltration = (labels[:, CHESTXRAY14_LABELS.index(n)] == 1 for n in ("Pneumonia", "Infiltration"))
    assert infiltration[pneumonia].mean() > 2 * infiltration.mean()


def test_synth_writes_the_exact_nih_layout(synthetic_root):
    root, summary = synthetic_root
    lines = (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    assert lines[0] == CSV_HEADER and all(len(line.split(",")) == 11 for line in lines)
    assert (root / "SYNTHETIC.txt").read_text().startswith("SYNTHETIC")
    assert summary["data"].startswith("SYNTHETIC")
    test = set((root / "test_list.txt").read_text().split())
    train_val = set((root / "train_val_list.txt").read_text().split())
    assert not test & train_val and len(test | train_val) == 60
    import tensorflow as tf

    image = tf.io.decode_png(tf.io.read_file(str(root / "images" / sorted(test)[0])))
    assert image.shape == (32, 32, 1) and image.dtype == tf.uint8


def test_synthetic_findings_are_learnable_by_a_small_model(tmp_path):
    """A linear probe on 32x32 pixels clearly beats chance on the head classes of the test split."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    write_synthetic(str(tmp_path / "root"), images=1500, size=64, seed=0)
    index = nih.read_nih(str(tmp_path / "root"))
    parts = splits.make_splits(index.records, index.lists)

    def features(records):
        pixels = [tf.image.resize(tf.io.decode_png(tf.io.read_file(r.path)), (32, 32), method="area").numpy().ravel()
                  for r in records]
        return np.stack(pixels) / 255.0, np.stack([r.labels for r in records])

    x_train, y_train = features(parts["train"] + parts["val"])
    x_test, y_test = features(parts["test"])
    for name in ("Infiltration", "Effusion", "Atelectasis"):  # the three most frequent findings
        column = CHESTXRAY14_LABELS.index(name)
        probe = LogisticRegression(C=0.05, max_iter=2000).fit(x_train, y_train[:, column])
        auc = roc_auc_score(y_test[:, column], probe.predict_proba(x_test)[:, 1])
        assert auc > 0.65, (name, auc)


def test_truncated_png_is_caught_by_a_full_decode(synthetic_root, tmp_path, capsys):
    root = copy_root(synthetic_root, tmp_path)
    name = sorted(os.listdir(root / "images"))[5]
    data = (root / "images" / name).read_bytes()
    (root / "images" / name).write_bytes(data[: len(data) // 2])  # header intact, body cut
    assert len(nih.read_nih(str(root)).records) == 60  # the header check cannot see it
    with pytest.raises(nih.DataError, match=f"{name}: not a decodable PNG file"):
        nih.read_nih(str(root), verify="decode")
    assert main(["inspect", "--data", str(root), "--verify", "decode", "--on-bad-image", "skip", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == {"not a PNG": 1}
