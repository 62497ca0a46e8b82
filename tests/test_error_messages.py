"""Issue 26: the error texts a new user met, each one line that names the file and says what to do,
with no internals (TensorFlow function names, pydicom's or NumPy's flags)."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_mamsf.cli.main import main

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v0_2_tiny.keras")
INTERNALS = ("function_node", "DecodeImage", "force=True", "allow_pickle", "unsafely", "Flatbuffer buffer",
             "Traceback", "ONNXRuntimeError")


def one_line_error(capsys, argv, command):
    assert main(argv) == 1, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mamsf {command}: error: ") and "\n" not in err, err
    assert not any(word in err for word in INTERNALS), err
    return err


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "chest.png"
    Image.fromarray(np.full((40, 40), 120, "uint8")).save(path)
    return str(path)


def test_a_text_file_named_png(tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all\n")
    err = one_line_error(capsys, ["predict", "--model", MODEL, str(fake)], "predict")
    assert f"{fake}: not a PNG image" in err


def test_a_fake_dicom_does_not_suggest_pydicom_s_force(tmp_path, capsys):
    fake = tmp_path / "study.dcm"
    fake.write_text("hello\n")
    err = one_line_error(capsys, ["predict", "--model", MODEL, str(fake)], "predict")
    assert f"{fake}: not a DICOM file" in err and "export it from the PACS as DICOM Part 10" in err


def test_a_text_file_given_to_compare_is_not_an_invitation_to_unpickle(tmp_path, capsys):
    text = tmp_path / "a.npz"
    text.write_text("y_true,y_score\n1,0.5\n")
    err = one_line_error(capsys, ["compare", str(text), str(text)], "compare")
    assert f"{text}: not a predictions file" in err and "holds Python objects" in err


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_a_corrupted_model_file_is_named(tmp_path, png, capsys, suffix):
    broken = tmp_path / f"model{suffix}"
    broken.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    err = one_line_error(capsys, ["predict", "--model", str(broken), png], "predict")
    assert f"{broken}: not a readable {'TFLite' if suffix == '.tflite' else 'ONNX'} model" in err


def test_a_model_the_export_set_aside_says_so(tmp_path, png, capsys):
    (tmp_path / "model_int8.FAILED.tflite").write_bytes(b"\x00")
    err = one_line_error(capsys, ["predict", "--model", str(tmp_path / "model_int8.tflite"), png], "predict")
    assert "export renamed it model_int8.FAILED.tflite: it failed its parity gate" in err
