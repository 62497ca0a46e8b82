"""`mamsf train`: config validation before anything runs, crash-safe resume to the same weights,
reproduction from the written config, bad images counted, and the JAX backend."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras_mamsf as mamsf
from keras_mamsf.cli.main import main
from keras_mamsf.training.config import ConfigError, TrainConfig

SMALL = ["--set", "backbone=test_efficientnet", "--set", "image_size=32", "--set", "batch_size=6", "--set",
         "fusion_filters=8", "--set", "n_boot=50", "--set", "val_fraction=0.3", "--set", "warmup_epochs=0.5",
         "--set", "learning_rate=0.003"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from keras_mamsf.data.synth import write_synthetic

    path = tmp_path_factory.mktemp("train") / "data"
    write_synthetic(str(path), images=72, size=48, seed=2)
    return path


def _command(*args):
    return [sys.executable, "-m", "keras_mamsf.cli.main", "train", *map(str, args)]


def _env(backend="tensorflow"):
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")


def _final_weights(run_dir):
    import keras_mamsf as mamsf

    return mamsf.load_model(run_dir / "final.keras", compile=False).get_weights()


def _error(capsys, argv):
    assert main(argv) == 1, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamsf train: error: ") and "\n" not in err, err
    return err


def test_bad_settings_fail_before_training(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    err = _error(capsys, ["train", "--data", str(root), "--out", out, "--set", "anchor_decy=0.99"])
    assert "unknown key 'anchor_decy'" in err and "anchor_decay" in err
    err = _error(capsys, ["train", "--data", str(root), "--out", out, "--set", "anchor=sometimes"])
    assert "anchor must be one of branch, shadow, inplace, none" in err
    assert "anchor_decay must be in [0.0, 1.0)" in _error(capsys, ["train", "--data", str(root), "--out", out,
                                                                   "--set", "anchor_decay=1.5"])
    assert "epochs must be a int" in _error(capsys, ["train", "--data", str(root), "--out", out, "--set", "epochs=two"])
    assert "no such folder" in _error(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out", out])
    config = tmp_path / "bad.toml"
    config.write_text('backbone = "efficientnetb0"\nlearning_rat = 0.01\n')
    err = _error(capsys, ["train", "--data", str(root), "--out", out, "--config", str(config)])
    assert str(config) in err and "unknown key 'learning_rat'" in err and "learning_rate" in err
    assert not os.path.exists(out)  # nothing ran, nothing written


def test_config_round_trip_and_contract_keys(tmp_path):
    contract = {"backbone", "image_size", "anchor", "anchor_decay", "anchor_layers", "loss", "epochs", "batch_size",
                "learning_rate", "seed", "weights", "dtype_policy"}
    assert contract <= set(TrainConfig.keys())
    config = TrainConfig().with_overrides(["anchor=none", "anchor_layers=[\"block6\", \"block7\", \"top_\"]",
                                           "fusion_kernels=[1, 3]", "learning_rate=3e-4", "class_aware=true"])
    assert (config.anchor, config.anchor_layers) == ("none", ("block6", "block7", "top_"))
    assert config.fusion_kernels == (1, 3)
    assert TrainConfig.from_file(config.write(tmp_path / "c.toml")) == config
    assert config.model_arguments()["anchor"] is None
    with pytest.raises(ConfigError, match="fusion_kernels must be odd"):
        TrainConfig().with_overrides(["fusion_kernels=[2]"])


def test_augment_flip_takes_the_flip_out_of_the_augmentation():
    from keras_mamsf.training.trainer import training_augmentation

    def names(*overrides):
        return [type(layer).__name__ for layer in training_augmentation(TrainConfig().with_overrides(overrides))]

    assert names()[0] == "RandomFlip" and "RandomFlip" not in names("augment_flip=false")
    assert names("augment_flip=false") == names()[1:]  # the rest unchanged
    assert names("augment=false") == names("augment=false", "augment_flip=false") == []


def test_augment_strength_scales_every_magnitude_but_the_flip():
    from keras_mamsf.data.pipeline import AUGMENT_DEFAULTS
    from keras_mamsf.training.trainer import training_augmentation

    def magnitudes(*overrides):
        layers = training_augmentation(TrainConfig().with_overrides(overrides))
        found = {}
        for layer in layers:
            name = type(layer).__name__
            if name == "RandomFlip":
                found["flip"] = layer.mode
            elif name == "RandomTranslation":
                found["translation"] = (layer.height_factor, layer.width_factor)
            else:
                key = {"RandomRotation": "rotation", "RandomZoom": "zoom", "RandomContrast": "contrast",
                       "RandomBrightness": "brightness"}[name]
                found[key] = layer.factor if name != "RandomZoom" else layer.height_factor
        return found

    def upper(value):  # a factor given as x is kept as x or as (-x, x), depending on the layer
        return max(value) if isinstance(value, (tuple, list)) else value

    plain, doubled, none = magnitudes(), magnitudes("augment_strength=2.0"), magnitudes("augment_strength=0.0")
    assert plain["flip"] == doubled["flip"] == "horizontal"
    for key, default in AUGMENT_DEFAULTS.items():
        if key in ("flip", "translation"):
            continue
        assert upper(plain[key]) == pytest.approx(default)
        assert upper(doubled[key]) == pytest.approx(2 * default)
    assert [upper(v) for v in doubled["translation"]] == pytest.approx([2 * AUGMENT_DEFAULTS["translation"]] * 2)
    assert "rotation" not in none and "zoom" not in none and none["flip"] == "horizontal"  # 0 leaves the flip alone
    with pytest.raises(ConfigError, match="augment_strength"):
        TrainConfig().with_overrides(["augment_strength=6"])


def test_every_model_argument_is_a_config_key_that_reaches_the_model():
    """Issue 22, acceptance 3: `MAMSFClassifier`'s (and `build_model`'s) arguments are config keys, or
    derived from named ones; each, set by `--set`, arrives in `model_arguments()` as the model takes it."""
    import inspect

    from keras_mamsf.training.config import DERIVED_MODEL_ARGUMENTS, MODEL_PARAMETERS

    classifier = set(inspect.signature(mamsf.MAMSFClassifier.__init__).parameters) - {"self", "kwargs"}
    assert classifier == set(MODEL_PARAMETERS)  # build_model passes everything through to it
    assert classifier - set(DERIVED_MODEL_ARGUMENTS) <= set(TrainConfig.keys())
    assert set(DERIVED_MODEL_ARGUMENTS) == {"input_shape", "num_classes", "dtype", "name"}
    assert "dtype_policy" in TrainConfig.keys() and {"image_size", "channels"} <= set(TrainConfig.keys())
    changed = {"backbone": "efficientnet_lite0", "weights": "imagenet", "anchor": "shadow", "anchor_decay": 0.99,
               "anchor_warmup": False, "anchor_warmup_gamma": 2.0, "anchor_warmup_power": 0.75,
               "anchor_layers": ["block6"], "fusion_filters": 32, "fusion_kernels": [1, 3],
               "fusion_activation": "relu", "dropout": 0.1}
    assert set(changed) == classifier - set(DERIVED_MODEL_ARGUMENTS)
    for key, value in changed.items():
        default = MODEL_PARAMETERS[key].default
        assert value != default, key  # a change the test can see
        config = TrainConfig().with_overrides([f"{key}={json.dumps(value)}"])
        arguments = config.model_arguments()
        assert arguments[key] == (tuple(value) if isinstance(value, list) else value), key
        assert TrainConfig().model_arguments()[key] == (tuple(default) if isinstance(default, tuple) else default)
    assert TrainConfig(image_size=64, channels=3).model_arguments()["input_shape"] == (64, 64, 3)
    buildable = dict(changed, backbone="test_efficientnet", anchor_layers=["block3"])  # no ImageNet, 4 stages
    model = mamsf.build_model(**dict(buildable, weights=None), input_shape=(32, 32, 1), num_classes=3,
                              dtype_policy="float32")
    config = model.get_config()
    assert {key: config[key] for key in buildable if key != "weights"} == {
        key: value for key, value in buildable.items() if key != "weights"}


@pytest.mark.slow
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(root, tmp_path):
    """SIGKILL in epoch 2, the same command again; then a fresh run from the written config. With the
    weight average on (its values live in the optimizer's state; validation swaps them in and out)."""
    interrupted, fresh = tmp_path / "interrupted", tmp_path / "fresh"
    command = _command("--data", root, "--out", interrupted, "--set", "epochs=2", *SMALL, "--set", "weight_ema=0.9",
                       "--set", "precise_bn_images=12", "--progress", "none")
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = interrupted / "backup" / "training_metadata.json"  # BackupAndRestore's record, written last
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if metadata.is_file() and metadata.read_text().strip():  # epoch 1 done and backed up
            time.sleep(0.1)  # into epoch 2, well before it ends
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed in epoch 2"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    backup = json.loads((interrupted / "backup" / "training_metadata.json").read_text())
    assert backup["epoch"] == 1 and not (interrupted / "final.keras").exists()
    subprocess.run(command, env=_env(), check=True, capture_output=True)
    rows = (interrupted / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]  # each epoch logged once
    again = _command("--data", root, "--out", fresh, "--config", interrupted / "config.toml", "--progress", "none")
    for _ in range(2):  # the second time into a finished folder starts from scratch, and so does its log
        subprocess.run(again, env=_env(), check=True, capture_output=True)
    rows = (fresh / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
    for a, b in zip(_final_weights(interrupted), _final_weights(fresh), strict=True):
        assert np.abs(a - b).max() <= 1e-5
    metrics = json.loads((interrupted / "metrics.json").read_text())
    assert metrics["source"]["split"] == "test" and metrics["resampling"] == "patient"
    assert json.loads((interrupted / "metrics.json").read_text())["macro"] == json.loads(
        (fresh / "metrics.json").read_text())["macro"]


@pytest.mark.slow
def test_truncated_png_is_skipped_and_counted_or_stops_the_run(root, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(root, data)
    victim = sorted((data / "images").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated PNG: header intact, data cut
    out = tmp_path / "run"
    err = _error(capsys, ["train", "--data", str(data), "--out", str(out), "--on-bad-image", "error",
                          "--set", "epochs=1", *SMALL])
    assert victim.name in err and "not a decodable PNG" in err and not (out / "history.csv").exists()
    assert main(["train", "--data", str(data), "--out", str(out), "--set", "epochs=1", *SMALL, "--progress", "none",
                 "--set", "precise_bn_images=10", "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert metrics["source"]["skipped_images"] == {"count": 1, "reasons": {"not a PNG": 1}, "first": [victim.name]}
    assert json.loads((out / "summary.json").read_text())["skipped_images"]["count"] == 1
    # where the initial weights came from (issue 39): the run folder, config.toml's comment, metrics.json
    assert json.loads((out / "initial_weights.json").read_text()) == {"weights": "none"}
    assert "# initial weights: none (random initialisation)\n" in (out / "config.toml").read_text()
    assert metrics["source"]["initial_weights"] == "none (random initialisation)"
    # precise_bn: the saved models were re-estimated (and keep their optimizer state)
    assert "BatchNorm statistics re-estimated from 10 training images in best.keras and final.keras" in captured.err
    import keras_mamsf as mamsf

    assert int(mamsf.load_model(out / "final.keras").optimizer.iterations.numpy()) > 0
    # Issue 26: in a fresh interpreter (nothing of training imported), the run's checkpoint loads compiled
    # (its MacroAUC metric and loss are found) and `predict --gradcam` runs on it with the run's thresholds.
    image = sorted((data / "images").iterdir())[0]
    code = f"import keras_mamsf as mamsf; print(type(mamsf.load_model({str(out / 'best.keras')!r})).__name__)"
    fresh = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert fresh.returncode == 0 and fresh.stdout.split()[-1] == "MAMSFClassifier", fresh.stderr[-2000:]
    cams = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", "predict", "--model", str(out / "best.keras"),
                           str(image), "--gradcam", "Effusion", "--out", str(tmp_path / "cams")],
                          env=_env(), capture_output=True, text=True)
    assert cams.returncode == 0, cams.stderr[-2000:]
    assert f"thresholds: {out / 'thresholds.json'}" in cams.stdout, cams.stdout
    assert (tmp_path / "cams" / f"{image.stem}_Effusion.png").is_file()


@pytest.mark.slow
def test_jax_backend_runs_a_small_job(root, tmp_path):
    out = tmp_path / "jax"
    result = subprocess.run(_command("--data", root, "--out", out, "--set", "epochs=1", *SMALL, "--progress", "none",
                                     "--set", "precise_bn_images=12"),
                            env=_env("jax"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on jax" in result.stdout and (out / "metrics.json").is_file() and (out / "best.keras").is_file()
    assert "BatchNorm statistics re-estimated from 12 training images" in result.stdout


@pytest.mark.slow
def test_the_same_command_twice_gives_the_same_metrics(root, tmp_path):
    """Issue 23: two runs with the same config and seed (fresh processes, two run folders) give the same
    `metrics.json` and bit-identical weights. What differs is what must: the run folder's paths, and the
    `.keras` file's SHA-256 (Keras' archive records the time it was saved). The runs score with test-time flip
    averaging: the trainer's evaluation follows the config's `test_time_flip`, and says so in metrics.json."""
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        result = subprocess.run(_command("--data", root, "--out", out, "--set", "epochs=2", *SMALL, "--progress",
                                         "none", "--set", "test_time_flip=true"), env=_env(), capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(out)

    def comparable(run):
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ("model", "model_sha256", "config"):
            metrics["source"].pop(key)
        metrics["thresholds"]["chosen_on"].pop("source")
        return metrics

    assert comparable(runs[0]) == comparable(runs[1])
    assert comparable(runs[0])["source"]["test_time_flip"] is True
    for a, b in zip(_final_weights(runs[0]), _final_weights(runs[1]), strict=True):
        assert np.array_equal(a, b)
