"""The results page's real-image ablation table (docs/results.md) is the kept report's
(`examples/results/ablation.json`), number for number, and the command above it is the one that wrote it (the data
itself is not needed here)."""

import json
import re
import shlex
from pathlib import Path

from keras_mamsf.evaluation.ablation import _ms
from keras_mamsf.evaluation.ablation import protocol as ablation_protocol
from keras_mamsf.evaluation.plots import value_text
from keras_mamsf.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RESULT = json.loads((ROOT / "examples" / "results" / "ablation.json").read_text())


def readme_section():
    page = (ROOT / "docs" / "results.md").read_text()
    return re.search(r"## Does the anchor help\? The first real ablation\n(.*?)(?:\n## |\Z)", page, re.S).group(1)


def test_the_kept_ablation_is_the_issue_s_size():
    cells = RESULT["cells"]
    assert {"none", "branch", "shadow", "inplace"} <= set(cells)
    assert all(len(entry["seeds"]) >= 3 and not entry["pending"] for entry in cells.values())
    images = RESULT["protocol"]["data"]["images"]
    assert RESULT["protocol"]["data"]["split"] == "patient"
    assert images["test"] / sum(images.values()) > 0.15  # a test part large enough to judge


def readme_tables():
    """The section's tables, each as `{first cell: [cells]}` (its header under "cell")."""
    tables = []
    for block in re.findall(r"(?:^\|.*\n?)+", readme_section(), re.M):
        rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in block.strip().splitlines()]
        tables.append({row[0]: row for row in rows if not set(row[0]) <= {"-"}})
    return tables


def test_the_readme_table_is_the_report_s():
    rows = next(table for table in readme_tables() if table["cell"][1] == "macro AUC")
    for name, entry in RESULT["cells"].items():
        row = rows[name]
        expected = [name, _ms(entry["macro_auc"]), _ms(entry["macro_ap"])]
        expected += [_ms(entry["rare"][label]) for label in RESULT["rare_classes"]]
        vs = entry["vs_none"]
        expected += (["baseline", ""] if vs is None else
                     [value_text(vs["delta_auc"], vs["ci"], 4), f"{vs['p_value']:.4g}"])
        assert row == expected, name
    assert [h.split(" [")[0] for h in rows["cell"][3:8]] == RESULT["rare_classes"]


def test_the_readme_drift_summary_is_the_report_s():
    rows = next(table for table in readme_tables() if table["cell"][1:] == ["online block", "anchor block"])
    for name, entry in RESULT["cells"].items():
        drift = entry["drift"]
        assert drift["seeds"] == len(entry["seeds"]), name
        anchor = _ms(drift["anchor"]["final"]) if drift["anchor"] else "n/a (no anchor)"
        assert rows[name] == [name, _ms(drift["online"]["final"]), anchor], name


def test_the_readme_command_is_the_one_that_wrote_it():
    command = re.search(r"```bash\n(mamsf ablate .*?)```", readme_section(), re.S).group(1)
    argv = shlex.split(command.replace("\\\n", " "))
    options = dict(zip(argv[2::2], argv[3::2]))
    sets = dict(value.split("=", 1) for flag, value in zip(argv, argv[1:]) if flag == "--set")
    protocol = RESULT["protocol"]
    assert argv[:2] == ["mamsf", "ablate"] and options["--grid"] == "modes"
    assert int(options["--seeds"]) == len(protocol["seeds"])
    assert sets["split"] == protocol["data"]["split"]
    assert int(sets["image_size"]) == protocol["image_size"] and int(sets["epochs"]) == protocol["epochs"]
    assert f"over {sets['warmup_epochs']} epoch(s)" in protocol["schedule"]
    # The recipe config moves on (its learning rate did); the command, resolved as `mamsf` resolves it,
    # must still give the kept report's settings.
    config = TrainConfig.from_file(ROOT / options["--config"]).with_overrides(
        [value for flag, value in zip(argv, argv[1:]) if flag == "--set"])
    resolved = ablation_protocol(config, protocol["seeds"], {})
    assert (protocol["optimizer"], protocol["batchnorm"]) == (resolved["optimizer"], resolved["batchnorm"])
    assert (config.epochs, config.batch_size, config.image_size) == (protocol["epochs"], protocol["batch_size"],
                                                                     protocol["image_size"])
    assert config.drift_monitor  # the recipe turns it off; the kept report has a drift summary
