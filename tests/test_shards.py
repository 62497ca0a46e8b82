"""Issue 4, acceptance 3: `prepare` shards give the raw pipeline's labels and pixels."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_mamsf.cli.main import main
from keras_mamsf.data import nih, splits
from keras_mamsf.data.pipeline import make_dataset
from keras_mamsf.data.shards import find_shards, make_shard_dataset, prepared_sizes
from keras_mamsf.data.sources import split_dataset
from keras_mamsf.data.synth import write_synthetic

SIZE = 48  # synthetic images are 96 px: the shards hold a real 2x downscale


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    root, out = base / "root", base / "out"
    write_synthetic(str(root), images=40, size=96, seed=11)
    assert main(["prepare", "--data", str(root), "--out", str(out), "--size", str(SIZE), "--json"]) == 0
    return root, out


def test_prepare_writes_the_official_splits(prepared, capsys):
    root, out = prepared
    path = find_shards(out, SIZE)
    assert path is not None
    builder = tfds.builder_from_directory(path)
    index = nih.read_nih(str(root))
    parts = splits.make_splits(index.records, index.lists, "official")
    assert {name: info.num_examples for name, info in builder.info.splits.items()} == {
        name: len(records) for name, records in parts.items() if records
    }


@pytest.mark.parametrize("split", ["train", "test"])
def test_shards_equal_the_raw_pipeline(prepared, split):
    root, out = prepared
    index = nih.read_nih(str(root))
    records = splits.make_splits(index.records, index.lists, "official")[split]
    raw = {r.image: x for r, (x, _) in zip(records, make_dataset(records, SIZE, 1, channels=1).unbatch())}
    builder = tfds.builder_from_directory(find_shards(out, SIZE))
    seen = 0
    for example in builder.as_dataset(split=split):
        name = example["image_index"].numpy().decode()
        record = next(r for r in records if r.image == name)
        np.testing.assert_array_equal(example["labels"].numpy(), record.labels)
        # uint8 shards vs the raw float resize: rounding only
        np.testing.assert_allclose(example["image"].numpy().astype("float32"), raw[name].numpy(), atol=0.5 + 1e-4)
        assert example["patient"].numpy().decode() == record.patient
        seen += 1
    assert seen == len(records)


def test_training_reads_shards_when_present_and_pngs_otherwise(prepared, tmp_path):
    root, out = prepared
    from_shards, source = split_dataset(str(root), "test", SIZE, 8, shards=str(out))
    from_pngs, other = split_dataset(str(root), "test", SIZE, 8, shards=str(tmp_path))
    assert (source, other) == ("shards", "png")
    labels = lambda ds: sorted(map(tuple, np.concatenate([y.numpy() for _, y in ds])))  # noqa: E731
    assert labels(from_shards) == labels(from_pngs)
    x, y = next(iter(make_shard_dataset(out, SIZE, "train", 4, training=True, seed=0)))
    assert x.shape == (4, SIZE, SIZE, 3) and y.shape == (4, 14)
    with pytest.raises(FileNotFoundError, match="no 224px shards; run `mamsf prepare"):
        make_shard_dataset(out, 224, "train", 4)


def test_prepare_refuses_a_missing_root(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_prepare_errors_on_or_counts_a_truncated_png(tmp_path, capsys):
    root = tmp_path / "root"
    write_synthetic(str(root), images=12, size=64, seed=2)
    name = sorted(p.name for p in (root / "images").iterdir())[3]
    data = (root / "images" / name).read_bytes()
    (root / "images" / name).write_bytes(data[: len(data) // 2])
    assert main(["prepare", "--data", str(root), "--out", str(tmp_path / "a"), "--size", "32"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after TFDS' progress bars: our one line
    assert last.startswith("mamsf prepare: error: ") and f"{name}: not a decodable PNG file" in last
    assert main(["prepare", "--data", str(root), "--out", str(tmp_path / "b"), "--size", "32",
                 "--on-bad-image", "skip", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone (TFDS' chatter goes to stderr)
    assert summary["skipped"] == {"not a PNG": 1} and sum(summary["splits"].values()) == 11


def test_export_calibration_reads_shards_like_pngs(prepared):
    from keras_mamsf.export.calibration import load_images, select_images

    root, out = prepared
    assert prepared_sizes(out) == [SIZE] and prepared_sizes(root) == []
    from_shards, shard_labels, source = load_images(str(out), "train", 32, channels=1, count=12, seed=4)
    from_pngs, png_labels, png_source = load_images(str(root), "train", 32, channels=1, count=12, seed=4)
    assert "48px shards" in source and "PNG" in png_source
    index = nih.read_nih(str(root))
    records = splits.make_splits(index.records, index.lists, "official")["train"]
    train_labels = np.stack([r.labels for r in records])
    chosen = select_images(train_labels, 12, seed=4)
    np.testing.assert_array_equal(png_labels, train_labels[chosen])
    # The source line (export's "calibration: ..." and "parity: ..." log lines) gives the distinct images too.
    distinct = len(np.unique(chosen))
    assert f"{distinct} distinct of its {len(records)} images" in png_source, png_source
    assert ("rare classes' positives repeated" in png_source) == (distinct < len(chosen))
    assert from_shards.shape == from_pngs.shape == (12, 32, 32, 1)
    # TFDS stores the split in its own order, so other images may be picked; the sample still covers
    # classes in label order (quota 1 each here, up to 12 classes) and its labels are rows of the split.
    covered = [c for c in range(train_labels.shape[1]) if train_labels[:, c].any()][:12]
    assert np.all(shard_labels[:, covered].sum(axis=0) > 0) and np.all(png_labels[:, covered].sum(axis=0) > 0)
    assert all(any(np.array_equal(row, other) for other in train_labels) for row in shard_labels)


@pytest.mark.slow
def test_evaluate_reads_the_split_from_shards_like_from_pngs(prepared, tmp_path, capsys):
    """`mamsf evaluate --shards`: the same images, labels and patients as from the PNGs, scores within
    the uint8 rounding of the shards."""
    import keras_mamsf as mamsf
    from keras_mamsf.evaluation import Predictions

    root, out = prepared
    model = mamsf.build_model(input_shape=(SIZE, SIZE, 1), fusion_filters=8, dropout=0.0)
    model_path = mamsf.save_model(model, tmp_path / "model.keras")
    results = {}
    for name, extra in (("png", []), ("shards", ["--shards", str(out)])):
        assert main(["evaluate", "--model", model_path, "--data", str(root), "--n-boot", "20", "--out",
                     str(tmp_path / name), *extra, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["source"]["images_from"] == name
        results[name] = Predictions.load(tmp_path / name / "predictions.npz")
    by_name = {image: i for i, image in enumerate(results["png"].image_index)}
    order = [by_name[image] for image in results["shards"].image_index]  # shards may store another order
    assert sorted(order) == list(range(results["png"].n_images))
    assert np.array_equal(results["shards"].y_true, results["png"].y_true[order])
    assert np.array_equal(results["shards"].patient_id, results["png"].patient_id[order])
    assert np.abs(results["shards"].y_score - results["png"].y_score[order]).max() < 1e-3


def test_image_sources_refuse_what_they_cannot_do_in_one_line(prepared):
    from keras_mamsf.data.sources import PngImages, ShardImages

    root, out = prepared
    with pytest.raises(ValueError, match="class_aware sampling reads the PNGs: drop --shards"):
        ShardImages(str(out)).dataset("train", SIZE, 4, training=True, class_aware=True)
    with pytest.raises(FileNotFoundError, match="no 224px shards; run `mamsf prepare --data ROOT --size 224"):
        ShardImages(str(out)).stored_size(224)
    assert ShardImages(str(out), exact_size=False).stored_size(24) == SIZE  # downscaled from the next size up
    with pytest.raises(ValueError, match=f"{root}: the test split is empty"):
        PngImages({"test": []}, root=str(root)).labels("test")
