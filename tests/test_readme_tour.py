"""Every command of the CLI tour (docs/training.md), run as written at small sizes (the substitutions below
change only sizes and counts), in a fresh folder."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from keras_mamsf.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SMALLER = {"--images 2000": "--images 64", "--size 128": "--size 48", "image_size=64": "image_size=32",
           "epochs=8": "epochs=1"}
EXTRA = {"train": ["--set", "backbone=test_efficientnet", "--set", "fusion_filters=8", "--set", "batch_size=8",
                   "--set", "n_boot=50", "--set", "val_fraction=0.3", "--progress", "none"],
         "evaluate": ["--n-boot", "50"], "compare": ["--n-boot", "50"],
         # one epoch at 32 px cannot show int8 non-inferiority at 0.02 on a few val images; the gate's
         # statistics are tested in tests/test_parity.py and tests/test_noninferiority.py
         "export": ["--calibration-images", "24", "--margin", "1", "--min-positives", "1"]}


def tour_commands():
    page = (ROOT / "docs" / "training.md").read_text()
    block = re.search(r"The CLI tour[^\n]*\n\n```bash\n(.*?)```", page, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("mamsf ")]


def test_the_tour_is_the_readme_s():
    commands = [shlex.split(line)[1] for line in tour_commands()]
    assert commands == ["synth", "inspect", "train", "train", "evaluate", "compare", "export", "predict"]


@pytest.mark.slow
def test_every_tour_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for line in tour_commands():
        for large, small in SMALLER.items():
            line = line.replace(large, small)
        argv = shlex.split(line)[1:]
        if not (argv[0] == "train" and "--config" in argv):  # a written config carries the small settings
            argv += EXTRA.get(argv[0], [])
        elif argv[0] == "train":
            argv += ["--progress", "none"]
        assert main(argv) == 0, line
        capsys.readouterr()
    none_config = (tmp_path / "runs/none/config.toml").read_text()
    assert 'anchor = "none"' in none_config and "image_size = 32" in none_config
    for path in ("runs/branch/metrics.json", "runs/none/predictions.npz", "runs/branch_eval/report.html",
                 "runs/branch_eval/thresholds.json", "runs/branch_vs_none/compare.json", "exports/model_int8.tflite",
                 "exports/model.onnx", "exports/manifest.json"):
        assert (tmp_path / path).is_file(), path
    manifest = json.loads((tmp_path / "exports/manifest.json").read_text())
    thresholds = json.loads((tmp_path / "runs/branch/thresholds.json").read_text())
    assert manifest["thresholds"]["values"] == thresholds["thresholds"]
    assert manifest["thresholds"]["rule"]["rule"] == thresholds["rule"] == "guaranteed"
    # The int8 file's own thresholds: the run's rule on its own scores of the root's val split (issue 24).
    own = manifest["artifacts"]["model_int8.tflite"]["thresholds"]
    assert own["rule"] == "guaranteed" and "model_int8.tflite's own scores" in own["chosen_on"]
    assert "thresholds" not in manifest["artifacts"]["model.onnx"]
    from keras_mamsf.data.sources import open_root
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.inference.model_card import model_card, run_split
    from keras_mamsf.inference.runners import scores_from_outputs
    from keras_mamsf.stats.thresholds import choose_thresholds, file_thresholds

    # the run's own val split (its config.toml: val_fraction 0.3), which export reads
    source = open_root("data/synth", split=run_split("runs/branch/best.keras"))
    images, labels = (np.concatenate(parts) for parts in zip(*source.dataset("val", 32, 64, channels=1)
                                                             .as_numpy_iterator()))
    int8 = "exports/model_int8.tflite"
    use = manifest["artifacts"]["model_int8.tflite"]["parity"]["use_output"]
    scores = scores_from_outputs(load_runner(int8).predict(images), use)
    chosen = file_thresholds(choose_thresholds(labels, scores, manifest["labels"])["guaranteed"], manifest["labels"])
    # the float model's threshold wherever the int8 file meets the floor there (at or below its own), else its own
    floats = manifest["thresholds"]["values"]
    kept = [label for label in manifest["labels"]
            if None not in (floats[label], chosen[label]) and floats[label] <= chosen[label]]
    assert own["kept_reference"] == kept
    assert own["values"] == {label: floats[label] if label in kept else chosen[label] for label in manifest["labels"]}
    assert model_card(int8)[1] == own["values"]  # what predict uses for that file
