"""Issue 43: the model card inside the exported file (`inference.card`, `export.card`) on a small model converted
here (TFLite float32 and int8, ONNX, SavedModel): written and read back, the file's outputs unchanged by it, a card
that does not belong to its file refused in one line, and a file without a card refused by `predict` unless
`--no-card`. The card of a real export (what `mamsf export` puts in, against its manifest) is checked in
test_export.py."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.export.card import TFLITE_BUFFER_ALIGNMENT, embed_card
from keras_mamsf.inference.card import CARD_NAME, DIGEST_FIELD, CardError, read_card, tflite_card_span
from keras_mamsf.inference.formats import load_runner
from keras_mamsf.inference.model_card import card_from_manifest, find_card
from keras_mamsf.labels import CHESTXRAY14_LABELS

SIZE = 16
# the toy model's ood_score is its image's mean pixel value: a white image is "out of distribution"
OOD_THRESHOLD = 200.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """`{"float32", "int8", "onnx", "savedmodel"}`: a 14-class model with the serving signature (probs, logits,
    ood_score), converted without a card; and the images that the tests feed it."""
    import keras
    import tensorflow as tf
    import tf2onnx

    from keras_mamsf.export import litert

    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(len(CHESTXRAY14_LABELS), name="logits")(x)
    outputs = {"probs": keras.layers.Activation("sigmoid", name="probs")(logits), "logits": logits,
               "ood_score": keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(1, 2, 3)), name="ood_score")(image)}
    model = keras.Model(image, outputs)
    folder = tmp_path_factory.mktemp("card")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda image: model(image),
                         input_signature=[tf.TensorSpec((1, SIZE, SIZE, 1), tf.float32, name="image")])
    saved = str(folder / "batch1")
    archive.write_out(saved, verbose=False)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 180, (6, SIZE, SIZE, 1)).astype("float32")
    paths = {"savedmodel": str(folder / "savedmodel")}
    shutil.copytree(saved, paths["savedmodel"])
    for variant in ("float32", "int8"):
        paths[variant] = str(folder / f"model_{variant}.tflite")
        with open(paths[variant], "wb") as handle:
            calibration = np.concatenate([images, np.full((1, SIZE, SIZE, 1), 255.0, "float32")])[:, None]
            handle.write(litert.convert(saved, variant, calibration if variant == "int8" else None))
    spec = tf.TensorSpec((None, SIZE, SIZE, 1), tf.float32, name="image")
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=(spec,), opset=17)
    paths["onnx"] = str(folder / "model.onnx")
    with open(paths["onnx"], "wb") as handle:
        handle.write(proto.SerializeToString())
    return paths, images


def a_card(fmt="tflite", variant="float32", thresholds=None):
    """The card `mamsf export` would embed for an artifact of this model (`card_from_manifest`)."""
    values = thresholds or {label: 0.5 for label in CHESTXRAY14_LABELS}
    record = {"created": "2026-12-07T00:00:00+00:00", "labels": list(CHESTXRAY14_LABELS),
              "input": {"name": "image", "height": SIZE, "width": SIZE, "channels": 1, "range": [0, 255]},
              "thresholds": {"values": values, "source": "the test's", "rule": None},
              "ood_guard": {"output": "ood_score", "threshold": OOD_THRESHOLD, "alpha": 0.01, "rule": "<="},
              "test_time_flip": False, "source_model": {"sha256": "ab" * 32, "name": "toy"}}
    entry = {"format": fmt, "variant": variant, "status": "ok", "parity": {"use_output": "probs", "failures": []}}
    return card_from_manifest(record, entry)


def copy(path, folder):
    target = os.path.join(folder, os.path.basename(path))
    (shutil.copytree if os.path.isdir(path) else shutil.copyfile)(path, target)
    return target


@pytest.mark.parametrize("kind", ["float32", "int8", "onnx", "savedmodel"])
def test_the_card_goes_into_the_file_and_its_outputs_stay_bit_identical(files, kind, tmp_path):
    paths, images = files
    path = copy(paths[kind], tmp_path)
    assert read_card(path) is None  # as converted: no card
    before = load_runner(path).predict(images)
    written = embed_card(path, a_card())
    card = read_card(path)
    assert card == written and card[DIGEST_FIELD] == written[DIGEST_FIELD] and len(card[DIGEST_FIELD]) == 64
    assert {key: value for key, value in card.items() if key != DIGEST_FIELD} == a_card()
    after = load_runner(path).predict(images)
    assert set(after) == {"probs", "logits", "ood_score"}
    for name in after:
        assert np.array_equal(before[name], after[name]), (kind, name)
    again = embed_card(path, a_card(thresholds={label: None for label in CHESTXRAY14_LABELS}))
    assert read_card(path)["thresholds"]["values"]["Hernia"] is None  # replaced, not added
    if kind in ("onnx", "savedmodel"):  # the digest leaves the card out (a TFLite file is laid out anew)
        assert again[DIGEST_FIELD] == written[DIGEST_FIELD]
    assert all(np.array_equal(before[name], load_runner(path).predict(images)[name]) for name in before)


def test_tflite_buffers_keep_the_converter_alignment_and_one_card_entry(files, tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    path = copy(files[0]["int8"], tmp_path)
    embed_card(path, a_card())
    embed_card(path, a_card())
    data = open(path, "rb").read()
    model = schema.Model.GetRootAs(data, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(CARD_NAME.encode()) == 1 and b"min_runtime_version" in names  # the converter's kept
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % TFLITE_BUFFER_ALIGNMENT == 0, index
    start, end = tflite_card_span(data)
    assert json.loads(data[start:end])["labels"] == list(CHESTXRAY14_LABELS)


def test_onnx_card_is_metadata_that_onnx_and_onnxruntime_read(files, tmp_path):
    import onnx
    import onnxruntime as ort

    path = copy(files[0]["onnx"], tmp_path)
    written = embed_card(path, a_card("onnx"))
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert [(p.key, json.loads(p.value)) for p in proto.metadata_props] == [(CARD_NAME, written)]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[CARD_NAME]) == written


def _edit_digest(path, kind):
    """The card's content_sha256 with its first hex digit changed, in place (the file's other bytes as they were)."""
    target = os.path.join(path, "assets", "keras_mamsf_model_card.json") if kind == "savedmodel" else path
    data = open(target, "rb").read()
    digest = read_card(path)[DIGEST_FIELD].encode()
    edited = digest[:1].replace(digest[:1], b"f" if digest[:1] != b"f" else b"e") + digest[1:]
    assert data.count(digest) == 1
    open(target, "wb").write(data.replace(digest, edited))
    return edited.decode()


@pytest.mark.parametrize("kind", ["float32", "onnx", "savedmodel"])
def test_a_card_that_does_not_belong_to_its_file_is_refused_in_one_line(files, kind, tmp_path, capsys):
    paths, images = files
    path = copy(paths[kind], tmp_path)
    embed_card(path, a_card())
    edited = _edit_digest(path, kind)
    with pytest.raises(CardError, match="refused: its model card does not belong to this file"):
        read_card(path)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((20, 20), 100, "uint8")).save(image)
    assert main(["predict", "--model", path, str(image)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mamsf predict: error: {path}: refused: its model card does not belong to this file "
                          f"(the card says content SHA-256 {edited[:12]}...") and "\n" not in err, err
    if kind == "float32":  # a changed weight byte with the card untouched: refused the same way
        (tmp_path / "weights").mkdir()
        fresh = copy(paths[kind], tmp_path / "weights")
        embed_card(fresh, a_card())
        data = bytearray(open(fresh, "rb").read())
        start, _ = tflite_card_span(data)
        data[start - 64] ^= 1  # a byte of the buffer before the card's: weights, or padding the digest covers
        open(fresh, "wb").write(bytes(data))
        with pytest.raises(CardError, match="does not belong to this file"):
            read_card(fresh)


def _png(path, value):
    from PIL import Image

    Image.fromarray(np.full((24, 24), value, "uint8")).save(path)
    return str(path)


def test_a_file_without_a_card_is_refused_unless_no_card(files, tmp_path, capsys):
    path = copy(files[0]["float32"], tmp_path)
    image = _png(tmp_path / "grey.png", 90)
    assert main(["predict", "--model", path, image]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"mamsf predict: error: {path}: no model card inside the file and no manifest.json beside it (an "
                   "export before 0.3?): no thresholds and no OOD guard to apply, so no findings; export it again, "
                   "put its manifest.json beside it, or pass --no-card for scores only")
    assert main(["predict", "--model", path, image, "--no-card", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (result,) = report["results"]
    assert report["card"] is None and result["findings"] == [] and result["in_distribution"] is None
    assert result["no_card"] == "no model card: no thresholds, no OOD guard (--no-card)"
    assert main(["predict", "--model", path, image, "--no-card"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == f"{image}: scores only  [no model card: no thresholds, no OOD guard (--no-card)]"
    assert sum("(no threshold)" in line for line in lines) == len(CHESTXRAY14_LABELS)
    # --thresholds gives findings (and still no guard)
    low = tmp_path / "low.json"
    low.write_text(json.dumps({label: 0.01 for label in CHESTXRAY14_LABELS}))
    assert main(["predict", "--model", path, image, "--no-card", "--thresholds", str(low), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["findings"] == list(CHESTXRAY14_LABELS) and result["no_card"]


def test_predict_reads_the_card_thresholds_guard_and_a_thresholds_file_over_it(files, tmp_path, capsys):
    path = copy(files[0]["int8"], tmp_path)
    thresholds = {label: (None if k % 3 == 0 else 0.5) for k, label in enumerate(CHESTXRAY14_LABELS)}
    thresholds["Mass"] = 0.001  # every image a finding
    embed_card(path, a_card("tflite", "int8", thresholds))
    grey, white = _png(tmp_path / "grey.png", 90), _png(tmp_path / "white.png", 255)
    assert find_card(path)[1] == "the file's own model card"
    assert main(["predict", "--model", path, grey, white, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["card"] == "the file's own model card" and report["thresholds"] == thresholds
    first, second = report["results"]
    assert first["in_distribution"] is True and "Mass" in first["findings"]
    assert first["not_screened"] == [label for label in CHESTXRAY14_LABELS if thresholds[label] is None]
    assert second["in_distribution"] is False and second["findings"] == []
    assert second["withheld"].startswith("out of distribution: ood_score 255.00 > 200.00")
    assert main(["predict", "--model", path, grey]) == 0
    out = capsys.readouterr().out
    assert "(not screened)" in out and "model card: the file's own model card" in out
    other = tmp_path / "t.json"
    other.write_text(json.dumps({label: 0.999 for label in CHESTXRAY14_LABELS}))
    assert main(["predict", "--model", path, grey, "--thresholds", str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"][0]["findings"] == [] and report["thresholds_source"] == str(other)


def test_folders_are_walked_sorted_and_what_is_passed_over_is_listed(tmp_path):
    from keras_mamsf.cli.predict import image_files

    for name in ("b.png", "a.JPG", "c.dcm", "notes.txt", "sub/d.png", "sub/deeper/e.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    dicom = tmp_path / "IM0001"  # no suffix, DICOM by its preamble: an image
    dicom.write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "README").write_text("no suffix, not DICOM")
    root = str(tmp_path)
    paths, skipped = image_files([root, "single.png"])
    assert paths == [os.path.join(root, n) for n in ("IM0001", "a.JPG", "b.png", "c.dcm")] + ["single.png"]
    assert skipped == [os.path.join(root, "sub") + os.sep, os.path.join(root, "README"),
                       os.path.join(root, "notes.txt")]
    paths, skipped = image_files([root], recursive=True)
    assert paths[-2:] == [os.path.join(root, "sub", "d.png"), os.path.join(root, "sub", "deeper", "e.jpeg")]
    assert skipped == [os.path.join(root, "README"), os.path.join(root, "notes.txt")]
