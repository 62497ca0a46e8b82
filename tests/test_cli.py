import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.labels import CHESTXRAY14_LABELS

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_subcommands(capsys):
    for argv, expected in ((["--help"], ("synth", "inspect", "train", "evaluate", "compare", "ablate", "export",
                                         "predict", "demo")),
                           (["ablate", "--help"], ("--shard I/N", "--report-only", "reviewer", "--seeds")),
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


@pytest.mark.slow
def test_demo_trains_both_models_and_compares_them(tmp_path, capsys):
    out = tmp_path / "demo"
    # --distribute mirrored on this one-CPU process: MirroredStrategy with a single replica.
    assert main(["demo", "--out", str(out), "--images", "60", "--size", "32", "--epochs", "1", "--batch-size", "8",
                 "--no-export", "--distribute", "mirrored", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == json.loads((out / "demo.json").read_text())
    assert report["data"] == "synthetic" and set(report["runs"]) == {"branch", "none"} and report["exports"] == {}
    assert "SYNTHETIC" in captured.err.splitlines()[0] and "anchor=None" in captured.err.splitlines()[0]
    for anchor, run in report["runs"].items():
        assert list(run["per_class"]) == list(CHESTXRAY14_LABELS)
        metrics = json.loads((out / "runs" / anchor / "metrics.json").read_text())
        assert run["macro_auc"] == metrics["macro"]["auc"] and (out / "runs" / anchor / "best.keras").is_file()
        assert 'anchor = "%s"' % anchor in (out / "runs" / anchor / "config.toml").read_text()
    comparison = json.loads((out / "compare_branch_vs_none" / "compare.json").read_text())
    assert report["comparison"]["macro_delta_auc"] == comparison["macro"]["delta_auc"]
    assert (out / "data" / "SYNTHETIC.txt").read_text().endswith("finding contrast 220\n")


def test_help_starts_without_tensorflow_and_commands_hide_its_log_lines(tmp_path):
    code = ("import sys; from keras_mamsf.cli.main import build_parser; build_parser(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
    from keras_mamsf.cli.main import SUBCOMMANDS

    for command in [[], *([name] for name in SUBCOMMANDS)]:
        result = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", *command, "--help"],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "usage: mamsf" in result.stdout, command
        assert "absl" not in result.stderr and "I0000" not in result.stderr and not result.stderr.strip(), command
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", "synth", "--out", str(tmp_path / "s"),
                             "--images", "4", "--size", "32"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "wrote 4 images" in result.stdout
    assert not re.search(r"^(WARNING: All log messages|[IWEF]\d{4} )", result.stderr, re.M), result.stderr
    verbose = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", "--verbose", "synth", "--out",
                              str(tmp_path / "v"), "--images", "4", "--size", "32"], capture_output=True, text=True,
                             env=env)
    assert verbose.returncode == 0  # --verbose leaves TensorFlow's own lines alone (which ones it prints varies)


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ('python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[test]" && '
               'python -m pytest -q -n 2 --dist loadfile tests')
    assert f"```bash\n{command}\n```" in readme
    assert command in ci
