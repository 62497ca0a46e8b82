import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.labels import CHESTXRAY14_LABELS

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_subcommands(capsys):
    for argv, expected in ((["--help"], ("synth", "inspect", "export", "predict", "demo")),
                           (["demo", "--help"], ("SYNTHETIC", "--json")),
                           (["export", "--help"], ("--calibration-data", "--no-verify", "--max-dp"))):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and all(word in out for word in expected), argv
    # The export scripts are entry points over the same command.
    result = subprocess.run([sys.executable, str(ROOT / "export" / "to_tflite.py"), "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "--quantize" in result.stdout and "--calibration-data" in result.stdout


def test_bad_input_is_one_line_and_non_zero(capsys):
    assert main(["demo", "--images", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamsf demo: error: --images must be >= 8") and "\n" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--anchor", "sometimes"])
    assert exit_info.value.code == 2


def test_demo_trains_saves_and_reloads(tmp_path, capsys):
    out = tmp_path / "demo"
    # --distribute mirrored on this one-CPU process: MirroredStrategy with a single replica.
    assert main(["demo", "--out", str(out), "--images", "16", "--size", "32", "--epochs", "1",
                 "--batch-size", "8", "--distribute", "mirrored", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "demo.json").read_text())
    assert (report["backend"], report["distribute"], report["replicas"]) == ("tensorflow", "mirrored", 1)
    assert report["data"].startswith("SYNTHETIC")
    train = report["images"]["train"]
    assert report["images"]["eval"] > 0 and report["images"]["skipped"] == {}
    assert report["anchor_step"] == report["optimizer_steps"] == -(-train // 8)  # one update per batch
    assert report["reload_max_abs_diff"] == 0.0
    per_class = report["auc"]["per_class"]
    assert list(per_class) == list(CHESTXRAY14_LABELS)
    unscored = [name for name, entry in per_class.items() if entry["auc"] is None]
    assert unscored == report["auc"]["classes_unscored"]
    assert report["auc"]["classes_scored"] + len(unscored) == 14
    assert sorted(p.name for p in out.iterdir()) == ["data", "demo.json", "model.keras"]
    assert (out / "data" / "SYNTHETIC.txt").is_file()


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[test]" && python -m pytest -q tests'
    assert f"```bash\n{command}\n```" in readme
    assert command in ci
