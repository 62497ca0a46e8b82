"""Test-time flip averaging (`test_time_flip`): each score the mean of the image's and its left-right mirror's
probabilities, decided once by the model card (the run's config.toml, or an export's manifest) and followed by
every scorer: `evaluate` (score_split), `predict` and `export`'s quantized thresholds."""

import json

import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.inference.model_card import uses_test_time_flip
from keras_mamsf.inference.runners import predict_scores
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.training.config import TrainConfig

from conftest import tiny_model

SIZE = 32


class LeftHeavyRunner:
    """Scores that depend on which side of the image is brighter, so a mirror changes them."""

    input_shape = (SIZE, SIZE, 1)

    def __init__(self):
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        left = images[:, :, : SIZE // 2].mean(axis=(1, 2, 3))
        logits = np.stack([(left - 128.0) / 64.0, -(left - 128.0) / 32.0], axis=1)
        return {"logits": logits.astype("float32"), "probs": (1 / (1 + np.exp(-logits))).astype("float32"),
                "ood_score": images.mean(axis=(1, 2, 3)) + left}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_predict_scores_averages_each_image_with_its_mirror():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (5, SIZE, SIZE, 1)).astype("float32")
    images[:, :, : SIZE // 2] *= np.linspace(0.2, 1.0, 5)[:, None, None, None]  # each image lopsided its own way
    left = images[:, :, : SIZE // 2].mean(axis=(1, 2, 3)).astype("float64")
    right = images[:, :, SIZE // 2 :].mean(axis=(1, 2, 3)).astype("float64")  # the mirror's left half

    def probs(side):
        return _sigmoid(np.stack([(side - 128) / 64, -(side - 128) / 32], axis=1))

    runner = LeftHeavyRunner()
    plain, outputs = predict_scores(runner, images)
    assert runner.calls == 1 and np.allclose(plain, probs(left), atol=1e-6)
    for use in ("probs", "logits"):  # probabilities averaged, whichever output the artifact is read through
        runner = LeftHeavyRunner()
        flipped, outputs = predict_scores(runner, images, use, test_time_flip=True)
        assert runner.calls == 2 and flipped.dtype == np.float64
        assert np.allclose(flipped, (probs(left) + probs(right)) / 2, atol=1e-6), use
        assert np.allclose(outputs["ood_score"], images.mean(axis=(1, 2, 3)) + left, rtol=1e-6)  # its own
    assert not np.allclose(flipped, plain, atol=1e-3)


def test_the_model_card_says_whether_scores_are_flip_averaged(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = run / "best.keras"
    assert uses_test_time_flip(model) is False  # no run config, no manifest
    TrainConfig().write(run / "config.toml")
    assert uses_test_time_flip(model) is False  # the default
    TrainConfig().with_overrides(["test_time_flip=true"]).write(run / "config.toml")
    assert uses_test_time_flip(model) is True
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({"labels": list(CHESTXRAY14_LABELS), "test_time_flip": True,
                                                       "artifacts": {"model.onnx": {"file": "model.onnx"}}}))
    assert uses_test_time_flip(export / "model.onnx") is True
    (export / "manifest.json").write_text(json.dumps({"labels": list(CHESTXRAY14_LABELS), "artifacts": {}}))
    assert uses_test_time_flip(export / "model.onnx") is False  # an export before the key: one pass


@pytest.fixture(scope="module")
def flip_run(tmp_path_factory):
    """A 14-class model in a run folder whose config.toml says test_time_flip, and a synthetic root."""
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.models import save_model

    base = tmp_path_factory.mktemp("flip")
    root = base / "data"
    write_synthetic(str(root), images=24, size=48, seed=3)
    run = base / "run"
    run.mkdir()
    import keras

    keras.utils.set_random_seed(0)  # the same untrained weights on every machine
    model = tiny_model(input_shape=(SIZE, SIZE, 1), num_classes=len(CHESTXRAY14_LABELS))
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 3000.0, bias])  # untrained outputs sit at 0.5: spread them so views differ
    path = save_model(model, run / "best.keras")
    TrainConfig().with_overrides(["test_time_flip=true", f"image_size={SIZE}"]).write(run / "config.toml")
    return {"root": root, "run": run, "model": path}


def _keras_scores(model_path, images, flip):
    model = mamsf.load_model(model_path, compile=False)
    scores = np.asarray(model.predict(images, verbose=0), dtype="float64")
    if flip:
        scores = (scores + np.asarray(model.predict(images[:, :, ::-1], verbose=0), dtype="float64")) / 2
    return scores


def test_evaluate_and_predict_follow_the_run_config(flip_run):
    from keras_mamsf.cli.predict import predict_files
    from keras_mamsf.data.images import load_image
    from keras_mamsf.data.sources import open_root
    from keras_mamsf.evaluation.scoring import score_split

    source = open_root(str(flip_run["root"]))
    test, details = score_split(flip_run["model"], source, split="test", batch_size=8)
    plain, plain_details = score_split(flip_run["model"], source, split="test", batch_size=8, test_time_flip=False)
    assert details["test_time_flip"] is True and plain_details["test_time_flip"] is False
    paths = [flip_run["root"] / "images" / name for name in test.image_index[:4]]
    images = np.stack([load_image(path, SIZE, 1) for path in paths])
    assert np.abs(test.y_score[:4] - _keras_scores(flip_run["model"], images, True)).max() < 1e-5
    assert np.abs(plain.y_score[:4] - _keras_scores(flip_run["model"], images, False)).max() < 1e-5
    assert np.abs(test.y_score - plain.y_score).max() > 1e-3  # the mirror is another view: 100x the tolerance
    results, _, _ = predict_files(flip_run["model"], paths)
    probs = np.array([[result["probs"][label] for label in CHESTXRAY14_LABELS] for result in results])
    assert np.abs(probs - test.y_score[:4]).max() < 1e-5


@pytest.mark.slow
def test_export_carries_the_flag_to_the_manifest_and_predict(flip_run, tmp_path, capsys):
    from keras_mamsf.cli.main import main
    from keras_mamsf.cli.predict import predict_files
    from keras_mamsf.export.exporter import export_model

    out = tmp_path / "export"
    record = export_model(str(flip_run["model"]), str(out), formats=("onnx",), verify=False, log=lambda line: None)
    assert record["test_time_flip"] is True
    assert json.loads((out / "manifest.json").read_text())["test_time_flip"] is True
    paths = sorted((flip_run["root"] / "images").glob("*.png"))[:3]
    results, _, _ = predict_files(str(out / "model.onnx"), paths)
    probs = np.array([[result["probs"][label] for label in CHESTXRAY14_LABELS] for result in results])
    from keras_mamsf.data.images import load_image

    images = np.stack([load_image(path, SIZE, 1) for path in paths])
    assert np.abs(probs - _keras_scores(flip_run["model"], images, True)).max() < 1e-4
    assert main(["predict", "--model", str(out / "model.onnx"), str(paths[0])]) == 0
    assert "scores: the mean over each image and its left-right mirror" in capsys.readouterr().out


def test_evaluate_overrides_the_card_for_the_model_and_not_for_the_baseline(flip_run, tmp_path, capsys):
    from keras_mamsf.cli.main import main
    from keras_mamsf.data.sources import open_root
    from keras_mamsf.evaluation import Predictions
    from keras_mamsf.evaluation.scoring import score_split

    model, out = str(flip_run["model"]), tmp_path / "eval"
    assert main(["evaluate", "--model", model, "--data", str(flip_run["root"]), "--test-time-flip", "off",
                 "--baseline", model, "--n-boot", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"]["test_time_flip"] is False
    source = open_root(str(flip_run["root"]))
    once = score_split(model, source, split="test", batch_size=8, test_time_flip=False)[0]
    assert np.abs(Predictions.load(out / "predictions.npz").y_score - once.y_score).max() < 1e-5
    flipped = score_split(model, source, split="test", batch_size=8)[0]  # the baseline: the card's way
    change = metrics["vs_baseline"]["macro"]["delta_auc"]
    scorable = [i for i, label in enumerate(once.labels) if 0 < once.y_true[:, i].sum() < len(once.y_true)]
    from sklearn.metrics import roc_auc_score

    def macro(p):
        return np.mean([roc_auc_score(p.y_true[:, i], p.y_score[:, i]) for i in scorable])

    assert change == pytest.approx(macro(once) - macro(flipped), abs=1e-6)
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(out / "predictions.npz"), "--test-time-flip", "on", "--out",
                 str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--test-time-flip scores a --model" in err and "\n" not in err
