import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mamsf.cli.main import SUBCOMMANDS, main
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
    assert result.stdout.startswith("usage: export/to_tflite.py") and "--format {" not in result.stdout
    assert "--format FORMAT" not in result.stdout
    assert not result.stderr.strip(), result.stderr


def test_bad_input_is_one_line_and_non_zero(capsys):
    assert main(["demo", "--images", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamsf demo: error: --images must be >= 8") and "\n" not in err
    assert main(["demo", "--backbone", "resnet50"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamsf demo: error: --backbone must be one of efficientnetb0,") and "\n" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--anchor", "sometimes"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_demo_trains_both_models_and_compares_them(tmp_path, capsys):
    out = tmp_path / "demo"
    # --distribute mirrored on this one-CPU process: MirroredStrategy with a single replica.
    assert main(["demo", "--out", str(out), "--images", "60", "--size", "32", "--epochs", "1", "--batch-size", "8",
                 "--backbone", "test_efficientnet", "--no-export", "--distribute", "mirrored", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == json.loads((out / "demo.json").read_text())
    assert report["data"] == "synthetic" and set(report["runs"]) == {"branch", "none"} and report["exports"] == {}
    intro = captured.err.splitlines()[0]
    assert "SYNTHETIC" in intro and "anchor=None" in intro and "(test_efficientnet from scratch" in intro
    for anchor, run in report["runs"].items():
        assert list(run["per_class"]) == list(CHESTXRAY14_LABELS)
        metrics = json.loads((out / "runs" / anchor / "metrics.json").read_text())
        assert run["macro_auc"] == metrics["macro"]["auc"] and (out / "runs" / anchor / "best.keras").is_file()
        config = (out / "runs" / anchor / "config.toml").read_text()
        assert f'anchor = "{anchor}"' in config and 'backbone = "test_efficientnet"' in config
    comparison = json.loads((out / "compare_branch_vs_none" / "compare.json").read_text())
    assert report["comparison"]["macro_delta_auc"] == comparison["macro"]["delta_auc"]
    assert (out / "data" / "SYNTHETIC.txt").read_text().endswith("finding contrast 220\n")


def test_help_starts_without_tensorflow_and_commands_hide_its_log_lines(tmp_path):
    # Every command's --help, in one process: no TensorFlow or Keras import, nothing on stderr.
    code = ("import sys\nfrom keras_mamsf.cli.main import SUBCOMMANDS, build_parser\n"
            "for command in [[], *([name] for name in SUBCOMMANDS)]:\n"
            "    try:\n        build_parser().parse_args([*command, '--help'])\n"
            "    except SystemExit as exit_info:\n        assert exit_info.code == 0, command\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.count("usage: mamsf") == 1 + len(SUBCOMMANDS), result.stdout[-2000:]
    assert result.stdout.split()[-2:] == ["False", "False"] and not result.stderr.strip(), result.stderr
    # The module entry point, and its errors are one line too (its CommandError is the commands' class).
    result = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: mamsf" in result.stdout and not result.stderr.strip()
    result = subprocess.run([sys.executable, "-m", "keras_mamsf.cli.main", "demo", "--images", "4"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("mamsf demo: error: --images must be >= 8")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
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
    command = ('python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[train,test]" && '
               'ruff check . && mkdocs build --strict -q && python -m pytest -q -n 2 --dist loadfile tests')
    assert f"```bash\n{command}\n```" in readme
    assert command in ci


def test_the_version_is_the_changelog_s_latest_entry(capsys):
    import re
    from importlib import metadata

    from keras_mamsf.version import __version__

    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d\d-\d\d$", changelog, re.M)[0] == __version__
    assert metadata.version("keras-mamsf") == __version__  # the installed distribution's (pip install -e .)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"keras-mamsf {__version__}"
