"""Export: every format loads in its own runtime and matches Keras; int8 is Edge TPU-ready; the
manifest and labels sit beside the artifacts; `mamsf predict` agrees across formats and inputs."""

import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.cli.main import main
from keras_mamsf.export import check_edgetpu, litert
from keras_mamsf.inference.formats import load_runner
from keras_mamsf.inference.runners import sigmoid
from keras_mamsf.labels import CHESTXRAY14_LABELS

from conftest import worker_report

# These wait for a worker process that trains and converts for minutes.
pytestmark = pytest.mark.slow

SIZE = 32
# What each format must reproduce of the Keras float model's probabilities (max |dp|).
TOLERANCE = {"savedmodel": 1e-4, "model.onnx": 1e-4, "model_float32.tflite": 1e-4,
             "model_dynamic.tflite": 5e-2, "model_int8.tflite": 0.1}


@pytest.fixture(scope="module")
def exported():
    """What tests/export_worker.py produced (it runs beside the rest of the suite)."""
    from pathlib import Path

    report = worker_report("export")
    assert "error" not in report, report.get("traceback", report)
    paths = {key: Path(value) for key, value in report.items() if key in ("root", "model", "out", "mixed",
                                                                          "mixed_out")}
    return dict(report, **paths, manifest=json.loads((paths["out"] / "manifest.json").read_text()))


def _probe(n=5, seed=0, channels=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, channels)).astype("float32")


def test_every_format_matches_keras_in_its_own_runtime(exported):
    assert exported["code"] == 0
    artifacts = exported["manifest"]["artifacts"]
    assert set(artifacts) == set(TOLERANCE)
    images = _probe()
    reference = mamsf.load_model(exported["model"]).predict(images, verbose=0)
    for name, tolerance in TOLERANCE.items():
        runner = load_runner(exported["out"] / name)
        outputs = runner.predict(images)
        probs = sigmoid(outputs["logits"]) if name == "model_int8.tflite" else outputs["probs"]
        assert np.abs(probs - reference).max() <= tolerance, name
        assert np.allclose(sigmoid(outputs["logits"]), outputs["probs"], atol=tolerance + 1e-6), name
        entry = artifacts[name]
        assert entry["status"] == "ok" and entry["parity"]["status"] == "passed", name
        figures = entry["parity"]["paths"][entry["parity"]["use_output"]]
        assert figures["images"] == exported["manifest"]["parity_data"]["images"] and figures["max_dp"] <= tolerance
        if tolerance == 1e-4:
            assert figures["max_dp"] <= 1e-4 and figures["threshold_agreement"] == 1.0
    assert set(artifacts["model_int8.tflite"]["parity"]["paths"]) == {"probs", "logits"}
    # The quantized gate: the non-inferiority test of the AUCs on the run's val split, patients resampled, its
    # options recorded with the figures (this worker loosens them: see tests/export_worker.py).
    test = artifacts["model_int8.tflite"]["parity"]["noninferiority"]
    assert (test["margin"], test["min_positives"], test["resampling"]) == (1.0, 1, "patient")
    assert set(test["per_class"]) == set(CHESTXRAY14_LABELS) and test["passed"]
    assert exported["manifest"]["parity_data"]["source"].count("val split") == 1
    judged = [e for e in test["per_class"].values() if e["verdict"] != "not judged"]
    assert judged and all(e["verdict"] == "pass" and e["positives"] >= 1 for e in judged)
    decisions = artifacts["model_int8.tflite"]["parity"]["decisions"]
    assert set(decisions) == {"flipped", "reference", "candidate"}
    assert "noninferiority" not in artifacts["model.onnx"]["parity"]


def test_signatures_shapes_and_single_onnx_input(exported):
    import onnxruntime as ort
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    out = exported["out"]
    serve = tf.saved_model.load(str(out / "savedmodel")).signatures["serve"]
    result = serve(image=tf.constant(_probe(3)))  # dynamic batch
    assert sorted(result) == ["logits", "ood_score", "probs"] and result["probs"].shape == (3, 14)
    assert result["ood_score"].shape == (3,)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert sorted(o.name for o in session.get_outputs()) == ["logits", "ood_score", "probs"]
    assert session.run(["probs"], {"image": _probe(3)})[0].shape == (3, 14)
    tflite = [out / f"model_{v}.tflite" for v in ("float32", "dynamic", "int8")]
    for path in tflite + [exported["mixed_out"] / "model_float16.FAILED.tflite"]:
        interpreter = Interpreter(model_path=str(path))
        assert interpreter.get_signature_list() == {"serve": {"inputs": ["image"],
                                                              "outputs": ["logits", "ood_score", "probs"]}}
        (detail,) = interpreter.get_input_details()
        assert list(detail["shape"]) == [1, SIZE, SIZE, 1] and list(detail["shape_signature"]) == [1, SIZE, SIZE, 1]


def test_int8_is_integer_only_and_edgetpu_ready(exported):
    from ai_edge_litert.interpreter import Interpreter

    path = exported["out"] / "model_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details() + interpreter.get_output_details()
    assert {np.dtype(d["dtype"]).name for d in details} == {"uint8"}
    types = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert types <= {"uint8", "int8", "int32"}, types
    report = check_edgetpu(str(path))
    assert report == {**report, "ready": True, "first_offending_op": None, "problems": []}
    entry = exported["manifest"]["artifacts"]["model_int8.tflite"]
    assert entry["edgetpu"]["ready"] and entry["edgetpu"]["ops"] == report["ops"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "LOGISTIC"} <= set(report["ops"])
    scale, zero_point = interpreter.get_output_details()[0]["quantization"]
    recorded = {name: o["quantization"] for name, o in entry["outputs"].items()}
    assert (scale, zero_point) in {(q["scale"], q["zero_point"]) for q in recorded.values()}
    assert recorded["probs"] == {"scale": 1 / 256, "zero_point": 0}  # the int8 sigmoid's 256 levels
    assert entry["calibration"]["images"] == 48 + 5 and "train split" in entry["calibration"]["source"]
    assert "the OOD guard must flag" in entry["calibration"]["source"]
    # The float file is not Edge TPU material, and the check says why.
    float_report = check_edgetpu(str(exported["out"] / "model_float32.tflite"))
    assert not float_report["ready"] and "FLOAT32" in float_report["problems"][0]


def test_int8_weights_are_rounded_with_error_feedback_and_kept_by_the_converter(exported):
    """The int8 file's dense weights against the float kernel: the converter's scale is the kernel's own max / 127
    (the rounding held each channel's largest weight), every channel reaches 127 steps, and some weights sit a
    step or more from where nearest rounding puts them (the error feedback moved them)."""
    from ai_edge_litert.interpreter import Interpreter

    record = exported["manifest"]["artifacts"]["model_int8.tflite"]["int8_weights"]
    assert record["rounding"] == "gptq" and record["images"] == 48 and record["kernels"] >= 10, record
    kernel = np.asarray(mamsf.load_model(exported["model"]).get_layer("logits").kernel.numpy(), "float64")
    interpreter = Interpreter(model_path=str(exported["out"] / "model_int8.tflite"))
    interpreter.allocate_tensors()
    found = [t for t in interpreter.get_tensor_details() if "logits" in t["name"] and np.dtype(t["dtype"]) == np.int8
             and list(t["shape"]) == [kernel.shape[1], kernel.shape[0]]]
    assert len(found) == 1, [t["name"] for t in found]
    steps = interpreter.get_tensor(found[0]["index"]).astype("float64")  # (classes, inputs)
    scale = np.abs(kernel).max(axis=0) / 127
    np.testing.assert_allclose(found[0]["quantization_parameters"]["scales"], scale, rtol=1e-6)
    np.testing.assert_array_equal(np.abs(steps).max(axis=1), 127)
    assert np.abs(steps - np.round(kernel.T / scale[:, None])).max() >= 1


def _tiny_savedmodel(tmp_path, activation_layer):
    from keras_mamsf.export.serving import serving_archive

    image = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Conv2D(4, 3)(image)
    x = activation_layer(x)
    logits = keras.layers.Dense(14, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    inner = keras.Model(image, {"probs": keras.layers.Activation("sigmoid")(logits), "logits": logits})
    path = str(tmp_path / "tiny")
    serving_archive(inner, batch_size=1).write_out(path, verbose=False)
    return path


def test_edgetpu_check_names_the_first_unsupported_op(tmp_path):
    path = _tiny_savedmodel(tmp_path, keras.layers.LeakyReLU(0.1))
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (1, 16, 16, 1)).astype("float32") for _ in range(8)]
    report = check_edgetpu(litert.convert(path, "int8", images))
    assert not report["ready"] and report["first_offending_op"] == "LEAKY_RELU"
    assert any("LEAKY_RELU: not supported by the Edge TPU" in p for p in report["problems"])


def test_conversion_never_falls_back_to_flex_ops(tmp_path):
    class Inverse(keras.layers.Layer):  # MatrixInverse has no TFLite builtin kernel
        def call(self, x):
            import tensorflow as tf

            square = tf.reshape(x[:, :4, :4, 0], (-1, 4, 4)) + tf.eye(4) * 10.0
            return x * tf.reduce_sum(tf.linalg.inv(square), axis=[1, 2])[:, None, None, None]

    path = _tiny_savedmodel(tmp_path, Inverse())
    with pytest.raises(litert.ConversionError, match="float32 conversion failed"):
        litert.convert(path, "float32")


def test_manifest_and_labels_sit_beside_the_artifacts(exported):
    out, manifest = exported["out"], exported["manifest"]
    assert (out / "labels.txt").read_text().splitlines() == list(CHESTXRAY14_LABELS) == manifest["labels"]
    assert manifest["source_model"]["sha256"] == hashlib.sha256(exported["model"].read_bytes()).hexdigest()
    assert manifest["source_model"]["initial_weights"] == {"weights": "none"}  # the run's initial_weights.json
    assert manifest["input"]["name"] == "image" and manifest["input"]["range"] == [0, 255]
    assert (manifest["input"]["height"], manifest["input"]["channels"]) == (SIZE, 1)
    assert manifest["thresholds"]["values"] == {label: 0.5 for label in CHESTXRAY14_LABELS}
    assert manifest["versions"]["tensorflow"] and manifest["versions"]["keras"]
    from keras_mamsf.data.sources import open_root

    # the gate's images: the whole val split (fewer than --parity-images 24), patients known
    names, patients = open_root(str(exported["root"])).ids("val", SIZE)
    assert manifest["parity_data"]["images"] == len(names) < 24
    assert f"val split, PNG: {len(names)} images, {len(set(patients))} patients" in manifest["parity_data"]["source"]
    assert manifest["graph"]["grayscale_stem"].startswith("folded: grayscale tiling")
    for name, entry in manifest["artifacts"].items():
        path = out / name
        assert path.exists() and entry["size_bytes"] > 0
        if path.is_file():
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    ops = manifest["artifacts"]["model_float32.tflite"]["ops"]
    assert "CONV_2D" in [o["op"] for o in ops] and all(isinstance(o["version"], int) for o in ops)
    assert manifest["artifacts"]["model.onnx"]["opset"] == 17
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def _write_dicom(path, pixels8, monochrome1=True):
    """A 12-bit DICOM of `pixels8` (uint8): stored inverted for MONOCHROME1, with a rescale and a
    window covering the whole range, so reading it back must give `pixels8` again."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    stored = pixels8.astype("uint16") * 16  # 0..4080
    if monochrome1:
        stored = 4080 - stored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 2040 - 1024 + 0.5, 4081
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_predict_agrees_across_formats_for_png_and_dicom(exported, tmp_path, capsys):
    import tensorflow as tf

    from keras_mamsf.cli.predict import predict_files

    png = sorted((exported["root"] / "images").glob("*.png"))[0]
    pixels = tf.io.decode_png(tf.io.read_file(str(png)), channels=1).numpy()[..., 0]
    dicom = tmp_path / "study.dcm"
    _write_dicom(str(dicom), pixels)
    from keras_mamsf.data.images import load_image, read_grayscale

    # The file's own window (VOI + MONOCHROME1 undone) gives the PNG's pixels back.
    assert np.array_equal(read_grayscale(dicom, dicom_window="file")[..., 0], pixels.astype("float32"))

    reference = mamsf.load_model(exported["model"]).predict(np.stack([load_image(png, SIZE, 1)]), verbose=0)[0]
    for name, tolerance in [("keras", 1e-6), *TOLERANCE.items()]:
        path = exported["model"] if name == "keras" else exported["out"] / name
        results, thresholds, _ = predict_files(path, [png, dicom], dicom_window="file")
        for result in results:
            probs = np.array([result["probs"][label] for label in CHESTXRAY14_LABELS])
            assert np.abs(probs - reference).max() <= tolerance, (name, result["image"])
            assert result["findings"] == [label for label in CHESTXRAY14_LABELS if result["probs"][label] >= 0.5]
    assert main(["predict", "--model", str(exported["out"] / "model.onnx"), str(png), str(dicom), "--json",
                 "--dicom-window", "file"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in report["results"]] == [str(png), str(dicom)]
    assert report["thresholds"] == {label: 0.5 for label in CHESTXRAY14_LABELS}


def test_every_format_carries_the_ood_guard(exported):
    """Each artifact's `ood_score` is the guard's score (float formats to 0.5%: TFLite's float RSQRT and TANH; the
    int8 file flags what the float model flags), and the manifest documents the output and threshold."""
    from keras_mamsf.guard import guard_from_source
    from keras_mamsf.guard.ood_guard import calibration_anchors

    record = exported["manifest"]["ood_guard"]
    assert "ood_score" in exported["manifest"]["outputs"] and record["output"] == "ood_score"
    assert record["threshold"] > 0 and record["alpha"] == 0.01 and "fitted now on" in record["fitted"]
    from keras_mamsf.data.sources import open_root

    trained = mamsf.load_model(exported["model"])
    guard = guard_from_source(open_root(str(exported["root"])), SIZE, 1, where="again", model=trained)
    assert guard.threshold == pytest.approx(record["threshold"], rel=1e-5)  # fitted on the same images
    assert guard.has_features and record["features"] == len(guard.feature_mean) > 0
    images = np.concatenate([_probe(2), calibration_anchors(SIZE, 1)[:3]])
    expected = guard.score(images, trained)
    for name in TOLERANCE:
        outputs = load_runner(exported["out"] / name).predict(images)
        assert outputs["ood_score"].shape == (len(images),), name
        if name != "model_int8.tflite":
            np.testing.assert_allclose(outputs["ood_score"], expected, rtol=5e-3, err_msg=name)
        else:  # int8: every one of these is out of distribution in both
            assert (outputs["ood_score"] > record["threshold"]).all() and (expected > record["threshold"]).all()
        ood = exported["manifest"]["artifacts"][name]["parity"]["ood_score"]
        assert ood["images"] == exported["manifest"]["parity_data"]["images"]
        # int8: the guard reads the int8 backbone's features, and this test model's (32 px, trained for seconds on
        # synthetic images) barely vary, so its quantization noise moves some verdicts near the threshold (0.83 of
        # the parity images agree here; 99.7% of 1,880 test films on the ImageNet-start model, docs/safety.md)
        assert ood["verdict_agreement"] >= (0.8 if name == "model_int8.tflite" else 1.0)


def test_predict_withholds_findings_for_a_ct_slice_in_every_format(exported, capsys):
    from pydicom.data import get_testdata_file

    from keras_mamsf.cli.predict import predict_files

    ct = get_testdata_file("CT_small.dcm")
    for name in TOLERANCE:
        model = str(exported["out"] / name)
        assert main(["predict", "--model", model, ct]) == 1  # the DICOM header check comes first
        err = capsys.readouterr().err.strip()
        assert "Modality is CT, not a radiograph" in err and "\n" not in err, err
        (result,), _, _ = predict_files(model, [ct], force=True)
        assert result["in_distribution"] is False and result["findings"] == [], name
        assert result["withheld"].startswith("out of distribution: ood_score")
        assert main(["predict", "--model", model, ct, "--force"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line for line in lines if line.startswith(ct)] == [f"{ct}: {result['withheld']}"], lines
        (shown,), _, _ = predict_files(model, [ct], force=True, show_ood=True)
        assert shown["findings"] == [label for label in CHESTXRAY14_LABELS if shown["probs"][label] >= 0.5]


def test_predict_withholds_findings_for_a_fundus_photograph_in_every_format(exported, capsys):
    """A retinal photograph (scikit-image's `retina.jpg`) given to any exported file: no findings, one line
    saying why."""
    from keras_mamsf.guard.foreign_images import foreign_files

    (fundus,) = [path for name, _, path in foreign_files() if name == "retina.jpg"]
    for name in TOLERANCE:
        assert main(["predict", "--model", str(exported["out"] / name), fundus]) == 0, name
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(fundus)]
        assert len(lines) == 1 and lines[0].startswith(f"{fundus}: out of distribution: ood_score"), (name, lines)
        assert lines[0].endswith("findings withheld"), lines


def test_predict_and_export_errors_are_one_line(exported, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases = [
        (["predict", "--model", str(exported["out"] / "model.onnx"), str(broken)], f"{broken}: cannot decode"),
        (["predict", "--model", str(exported["out"] / "model.onnx"), str(tmp_path / "none.png")], "no such image"),
        (["predict", "--model", str(tmp_path / "old.h5"), str(broken)], "legacy HDF5 model files are refused"),
        (["predict", "--model", str(exported["out"] / "labels.txt"), str(broken)], "not a model this library runs"),
        (["export", str(exported["model"]), "--out", str(tmp_path / "x"), "--quantize", "int8"],
         "int8 needs --calibration-data ROOT"),
        (["export", str(exported["model"]), "--out", str(tmp_path / "x"), "--quantize", "int4"],
         "--quantize: unknown variant"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


def test_mixed_precision_model_exports_with_float32_parity(exported):
    mixed = mamsf.load_model(exported["mixed"])
    assert mixed.get_layer("fusion").compute_dtype == "bfloat16"
    manifest = json.loads((exported["mixed_out"] / "manifest.json").read_text())
    assert manifest["source_model"]["dtype_policy"] == "mixed_bfloat16"
    images = _probe(4)
    float_model = mamsf.load_model(exported["model"])
    entry = manifest["artifacts"]["model_float32.tflite"]
    assert entry["status"] == "ok" and entry["parity"]["paths"]["probs"]["max_dp"] <= 1e-4
    probs = load_runner(exported["mixed_out"] / "model_float32.tflite").predict(images)["probs"]
    # The float32 rebuild computes what the float model computes (same weights) ...
    assert np.abs(probs - float_model.predict(images, verbose=0)).max() <= 1e-4
    # ... and stays near the bfloat16 model itself.
    assert np.abs(probs - mixed.predict(images, verbose=0)).max() < 0.05
    # A gate that cannot hold: the artifact is reported failed, with its figures; the run is not ok.
    entry = manifest["artifacts"]["model_float16.tflite"]
    assert (exported["mixed_ok"], exported["mixed_failed"]) == (False, ["model_float16.tflite"])
    assert entry["status"] == "failed" and entry["parity"]["failures"][0].startswith("no class has 1000000 positives")
    figures = entry["parity"]["paths"]["probs"]
    assert figures["images"] == manifest["parity_data"]["images"] and figures["max_dp"] <= 2e-2  # close, yet failed
    # Off its normal name, so nothing ships it by mistake; the manifest says where it went.
    assert entry["file"] == "model_float16.FAILED.tflite"
    assert not (exported["mixed_out"] / "model_float16.tflite").exists()
    probs = load_runner(exported["mixed_out"] / "model_float16.FAILED.tflite").predict(images)["probs"]
    assert np.abs(probs - float_model.predict(images, verbose=0)).max() <= 2e-2


def test_export_exits_non_zero_when_an_artifact_fails(tmp_path, monkeypatch, capsys):
    from keras_mamsf.export import exporter

    def failing(model_path, out_dir, **kwargs):
        return {"artifacts": {"model.onnx": {"status": "failed"}}, "failed": ["model.onnx"]}

    monkeypatch.setattr(exporter, "export_model", failing)
    assert main(["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--format", "onnx"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mamsf export: error: failed: model.onnx (figures in the manifest; kept as *.FAILED.*)"]
    # The export/ scripts name themselves in their error lines.
    import runpy
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "export", "to_tflite.py")
    # --verbose: the script would otherwise filter this test process's native stderr, as it does a console's
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--verbose"])
    with pytest.raises(SystemExit) as exit_code:
        runpy.run_path(script, run_name="__main__")
    assert exit_code.value.code == 1
    assert capsys.readouterr().err.strip() == ("export/to_tflite.py: error: failed: model.onnx "
                                               "(figures in the manifest; kept as *.FAILED.*)")


@pytest.mark.parametrize("mode", ["shadow", "inplace", "None"])
def test_every_anchor_mode_exports_within_1e_4_of_keras(exported, mode):
    """Branch is checked above on the trained test model; here the other modes on the toy model, whose
    anchor weights differ from the online ones (so "shadow" must read the anchor, the others not)."""
    result = exported["modes"][mode]
    assert result["ok"], result
    images = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    model = mamsf.load_model(result["model"])
    reference = model.predict(images, verbose=0)
    for name in ("savedmodel", "model_float32.tflite", "model.onnx"):
        probs = load_runner(os.path.join(result["out"], name)).predict(images)["probs"]
        assert np.abs(probs - reference).max() <= 1e-4, (mode, name)
    if mode == "shadow":  # the check can fail: its anchor path computes other features than the online one
        features = model.feature_model().predict(images, verbose=0)
        assert np.abs(features["online"] - features["anchor"]).max() > 1e-3


def test_efficientnet_b0_exports_within_1e_4_of_keras(exported):
    """The suite's models use test_efficientnet; B0 itself, with both final blocks of "branch", goes
    through the float32 TFLite and ONNX converters once."""
    result = exported["b0"]
    assert result["ok"], result
    model = mamsf.load_model(result["model"])
    assert model.get_config()["backbone"] == "efficientnetb0"
    assert sum(layer.name.startswith("block7a_dwconv") for layer in model.anchor_layers[0].block.layers) == 1
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    reference = model.predict(images, verbose=0)
    for name in ("model_float32.tflite", "model.onnx"):
        probs = load_runner(os.path.join(result["out"], name)).predict(images)["probs"]
        assert np.abs(probs - reference).max() <= 1e-4, name
    from keras_mamsf.export import edgetpu

    tflite = edgetpu.read_model(os.path.join(result["out"], "model_float32.tflite"))
    codes = edgetpu.opcodes(tflite)
    ops = [codes[op.opcodeIndex]["op"] for op in tflite.subgraphs[0].operators]
    assert ops.count("DEPTHWISE_CONV_2D") == 17  # B0's 16 blocks + the anchor's copy of block7a: not merged
    # The grayscale tiling is folded into a 1-channel stem: its three concatenations are the anchor's, the fusion
    # head's and the OOD guard's (its three contrast statistics); none tiles the input to RGB.
    assert ops.count("CONCATENATION") == 3
    assert [int(d) for d in tflite.subgraphs[0].tensors[tflite.subgraphs[0].inputs[0]].shape] == [1, 32, 32, 1]


def test_predict_warns_when_the_manifest_says_the_file_failed(exported, tmp_path, capsys):
    import tensorflow as tf

    image = tmp_path / "x.png"
    image.write_bytes(tf.io.encode_png(np.zeros((40, 40, 1), "uint8")).numpy())
    failed = exported["mixed_out"] / "model_float16.FAILED.tflite"
    assert main(["predict", "--model", str(failed), str(image), "--json"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: model_float16.FAILED.tflite failed its parity check at export (no class has ")
    assert "\n" not in err
    assert main(["predict", "--model", str(exported["mixed_out"] / "model_float32.tflite"), str(image), "--json"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_every_artifact_carries_its_model_card(exported):
    """Issue 43: each file holds the card its manifest entry describes (labels, thresholds, the guard's threshold,
    the output to read, the library version), tied to the file by the digest the manifest records too."""
    from keras_mamsf.inference.card import read_card
    from keras_mamsf.inference.model_card import card_from_manifest

    manifest = exported["manifest"]
    for name, entry in manifest["artifacts"].items():
        card = read_card(exported["out"] / name)
        assert card is not None, name
        assert card.pop("content_sha256") == entry["card"]["content_sha256"], name
        assert card == card_from_manifest(manifest, entry), name
        assert card["library"]["version"] == mamsf.__version__ and card["ood_guard"]["threshold"] > 0
        assert card["artifact"]["variant"] == entry["variant"] and card["output"] == entry["parity"]["use_output"]
    failed = exported["mixed_out"] / "model_float16.FAILED.tflite"
    assert read_card(failed)["artifact"]["status"] == "failed"


def test_a_file_alone_predicts_as_it_does_beside_its_manifest(exported, tmp_path):
    """Acceptance 1 of issue 43: each .tflite variant, the ONNX file and the SavedModel copied alone into a fresh
    folder give the findings, thresholds and OOD verdicts of the manifest's card for the same file."""
    from keras_mamsf.cli.predict import predict_files
    from keras_mamsf.data.images import load_image
    from keras_mamsf.inference.bedside import Bedside
    from keras_mamsf.inference.model_card import card_from_manifest, find_card
    from keras_mamsf.inference.runners import square_input

    pngs = sorted((exported["root"] / "images").glob("*.png"))[:3]
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), "uint8")).save(blank)  # the guard flags it in every format
    paths = [*pngs, blank]
    manifest = exported["manifest"]
    for name, entry in manifest["artifacts"].items():
        alone = tmp_path / name.replace(".", "_") / name
        alone.parent.mkdir()
        source = exported["out"] / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, alone)
        assert find_card(alone)[1] == "the file's own model card"
        results, thresholds, output = predict_files(alone, paths)
        beside = Bedside(source, card=card_from_manifest(manifest, entry))
        size, channels = square_input(beside.runner, source)
        expected = beside.screen(np.stack([load_image(path, size, channels) for path in paths]))
        assert thresholds == beside.thresholds and output == beside.output, name
        for ours, theirs in zip(results, expected, strict=True):
            assert ours["findings"] == theirs["findings"] and ours["in_distribution"] == theirs["in_distribution"]
            assert ours["probs"] == theirs["probs"] and ours["ood_score"] == theirs["ood_score"], name
        assert results[-1]["in_distribution"] is False, name
        if name != "model_int8.tflite":  # int8 may flag a training film of this test model (see above)
            assert all(r["in_distribution"] for r in results[:-1]), name


def test_predict_over_a_folder_reports_a_broken_file_and_predicts_the_rest(exported, tmp_path, capsys):
    """Acceptance 3 of issue 43: a folder of 5 images, 1 of them broken: 4 results, 1 named failure, exit 1;
    --strict stops at the broken file."""
    folder = tmp_path / "study"
    folder.mkdir()
    for path in sorted((exported["root"] / "images").glob("*.png"))[:4]:
        shutil.copyfile(path, folder / path.name)
    broken = folder / "00000000_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("not an image")
    model = str(exported["out"] / "model_float32.tflite")
    assert main(["predict", "--model", model, str(folder), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [r["image"] for r in report["results"]] == sorted(str(p) for p in folder.glob("*.png"))
    assert report["failed"] == 1 and report["results"][0]["error"].startswith(f"{broken}: ")
    assert sum("findings" in r for r in report["results"]) == 4
    assert "skipped 1 path(s)" in captured.err and "notes.txt" in captured.err
    assert main(["predict", "--model", model, str(folder)]) == 1
    out = capsys.readouterr()
    assert f"{broken}: failed: cannot decode" in out.out or f"{broken}: failed: not a PNG" in out.out, out.out
    assert "1 of 5 image(s) failed; the others were predicted" in out.err
    assert main(["predict", "--model", model, str(folder), "--strict"]) == 1
    out = capsys.readouterr()
    assert out.err.strip().splitlines()[-1].startswith(f"mamsf predict: error: {broken}: ") and not out.out
