"""Issue 26, acceptance 1: the bedside runtime. A second venv with only the base install (`pip install
keras-mamsf[onnx]`: no TensorFlow, Keras, SciPy or scikit-learn) runs `predict` on the float32 and int8
TFLite files and the ONNX file of a trained model, for PNG, JPEG and DICOM (JPEG Baseline and JPEG 2000)
inputs, and gives what the full library gives. The venv costs one `pip install` from the registry's
wheels (about a minute; the full install has already cached most of them)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_mamsf.labels import CHESTXRAY14_LABELS

from conftest import worker_report

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = ("model_float32.tflite", "model_int8.tflite", "model.onnx")
HEAVY = ("tensorflow", "keras", "scipy", "sklearn", "jax", "torch", "matplotlib")
RUN_IN_RUNTIME = """
import importlib.util, json, sys
from keras_mamsf.cli.predict import predict_files
models, images = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {name: predict_files(path, images, dicom_window="file")[0] for name, path in models.items()}
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
importable = [name for name in json.loads(sys.argv[3]) if importlib.util.find_spec(name) is not None]
print("RESULT " + json.dumps({"results": out, "loaded": loaded, "importable": importable}))
"""


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-e", f"{ROOT}[onnx]"], capture_output=True,
                             text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def _images(exported, tmp_path):
    import imagecodecs
    from pydicom.uid import JPEG2000, JPEGBaseline8Bit
    from test_dicom import write_dicom  # the DICOM test's writer (real encoders, imagecodecs)

    png = sorted((exported["root"] / "images").glob("*.png"))[0]
    pixels = np.asarray(Image.open(png).convert("L"))
    jpeg = tmp_path / "chest.jpg"
    Image.fromarray(pixels).save(jpeg, quality=92)
    baseline = write_dicom(tmp_path / "baseline.dcm", pixels, JPEGBaseline8Bit, bits_stored=8,
                           encoded=imagecodecs.jpeg8_encode(pixels, level=92))
    j2k = write_dicom(tmp_path / "j2k.dcm", pixels, JPEG2000, bits_stored=8,
                      encoded=imagecodecs.jpeg2k_encode(pixels, level=50, codecformat="j2k"))
    return [str(png), str(jpeg), baseline, j2k]


def test_predict_runs_without_tensorflow_and_agrees_with_the_full_library(runtime_python, tmp_path):
    from keras_mamsf.cli.predict import predict_files

    exported = worker_report("export")
    models = {name: str(exported["out"]) + os.sep + name for name in ARTIFACTS}
    images = _images({"root": __import__("pathlib").Path(exported["root"])}, tmp_path)
    run = subprocess.run([runtime_python, "-c", RUN_IN_RUNTIME, json.dumps(models), json.dumps(images),
                          json.dumps(HEAVY)], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    report = json.loads(lines[-1][len("RESULT "):])
    assert report["loaded"] == [] and report["importable"] == [], report
    for name, path in models.items():
        full = predict_files(path, images, dicom_window="file")[0]
        for ours, theirs in zip(report["results"][name], full, strict=True):
            a = np.array([ours["probs"][label] for label in CHESTXRAY14_LABELS])
            b = np.array([theirs["probs"][label] for label in CHESTXRAY14_LABELS])
            if "int8" in name:
                assert np.array_equal(a, b), (name, ours["image"])
            else:
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"{name} {ours['image']}")
            assert ours["findings"] == theirs["findings"]


def test_the_runtime_command_says_which_install_the_rest_needs(runtime_python, tmp_path):
    mamsf = os.path.join(os.path.dirname(runtime_python), "mamsf")
    helped = subprocess.run([mamsf, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "usage: mamsf" in helped.stdout, helped.stderr
    npz = tmp_path / "p.npz"
    np.savez(npz, y_true=np.zeros((2, 14)), y_score=np.zeros((2, 14)))
    result = subprocess.run([mamsf, "evaluate", "--predictions", str(npz), "--out", str(tmp_path / "e")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mamsf evaluate: error: this needs the full library (scipy is not installed; the runtime install has "
        "none): pip install 'keras-mamsf[train]'"], result.stderr


def test_the_readme_device_example_runs_in_the_runtime(runtime_python, tmp_path):
    """Issue 43, acceptance 2: the device example (docs/export.md), run in the runtime venv on the int8 file alone
    (its card inside), marks `predict`'s findings, withholds an image the OOD guard flags, and prints "not screened"
    for a card's `null` thresholds."""
    import re
    import shutil

    from PIL import Image

    from keras_mamsf.export.card import embed_card
    from keras_mamsf.inference.card import read_card

    exported = worker_report("export")
    page = open(os.path.join(ROOT, "docs", "export.md")).read()
    section = page[page.index("## On the device"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    model = tmp_path / "alone" / "model_int8.tflite"  # no manifest beside it
    model.parent.mkdir()
    shutil.copyfile(os.path.join(exported["out"], "model_int8.tflite"), model)
    png = str(sorted((__import__("pathlib").Path(exported["root"]) / "images").glob("*.png"))[0])
    blank = str(tmp_path / "blank.png")
    Image.fromarray(np.zeros((40, 40), "uint8")).save(blank)

    def example(model_file, image):
        source = code.replace('"exports/model_int8.tflite"', repr(str(model_file))).replace('"chest.png"', repr(image))
        run = subprocess.run([runtime_python, "-c", source], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=""))
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.splitlines()

    from keras_mamsf.cli.predict import predict_files

    (expected, withheld), _, _ = predict_files(model, [png, blank])
    lines = example(model, png)
    assert len(lines) == 14 and all(any(label in line for label in CHESTXRAY14_LABELS) for line in lines), lines
    assert sorted(line[2:].split()[0] for line in lines if line.startswith("*")) == sorted(expected["findings"])
    assert example(model, blank) == [withheld["withheld"]] and withheld["withheld"].startswith("out of distribution")
    card = read_card(model)
    card["thresholds"]["values"] = dict(card["thresholds"]["values"], Hernia=None, Pneumonia=None)
    embed_card(model, card)
    lines = example(model, png)
    assert sorted(line[2:].split()[0] for line in lines if line.endswith("(not screened)")) == ["Hernia", "Pneumonia"]
