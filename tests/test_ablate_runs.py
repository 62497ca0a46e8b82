"""mamsf ablate end to end on a tiny synthetic root (64 px, 2 epochs, 2 seeds, 3 cells): two shard
workers on one folder, one of them killed mid-run and restarted; every cell-seed run exactly once;
the same table as a single process; a second run skips everything; the drift monitor's behaviour."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_mamsf.cli.main import main

from harness import assert_close

pytestmark = pytest.mark.slow

GRID = """[base]
anchor_warmup = false

[cells.none]
anchor = "none"

[cells.branch]
anchor = "branch"
anchor_decay = 0.999

[cells."branch_decay_0.9"]
anchor = "branch"
anchor_decay = 0.9
"""
SETTINGS = ["--set", "backbone=test_efficientnet", "--set", "image_size=64", "--set", "epochs=2", "--set",
            "batch_size=16", "--set", "fusion_filters=16", "--set", "n_boot=50", "--set", "drift_per_class=4",
            "--set", "learning_rate=0.003", "--seeds", "2",
            "--progress", "none"]
RUNS = [f"{cell}/seed{seed}" for cell in ("none", "branch", "branch_decay_0.9") for seed in (0, 1)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from keras_mamsf.data.synth import write_synthetic

    base = tmp_path_factory.mktemp("ablate")
    write_synthetic(str(base / "data"), images=120, size=64, seed=3, contrast=220)
    (base / "grid.toml").write_text(GRID)
    return base


def _worker(setup, out, shard):
    command = [sys.executable, "-m", "keras_mamsf.cli.main", "ablate", "--data", str(setup / "data"), "--out",
               str(out), "--grid", str(setup / "grid.toml"), *SETTINGS, "--shard", shard]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _events(out):
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def _table(out):
    result = json.loads((out / "ablation.json").read_text())
    return {name: (entry["seeds"], entry["macro_auc"], entry["macro_ap"], entry["rare"],
                   None if entry["vs_none"] is None else (entry["vs_none"]["delta_auc"], entry["vs_none"]["ci"]))
            for name, entry in result["cells"].items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        flat_a, flat_b = json.dumps(a[name]), json.dumps(b[name])
        numbers_a = np.array([float(x) for x in __import__("re").findall(r"-?\d+\.\d+(?:e-?\d+)?", flat_a)])
        numbers_b = np.array([float(x) for x in __import__("re").findall(r"-?\d+\.\d+(?:e-?\d+)?", flat_b)])
        assert numbers_a.shape == numbers_b.shape, name
        assert_close(numbers_a, numbers_b, err_msg=name)


def test_two_shards_a_kill_and_a_single_process_agree(setup, tmp_path, capsys):
    out = tmp_path / "shared"
    first, second = _worker(setup, out, "1/2"), _worker(setup, out, "2/2")
    # shard 1/2 runs none/seed0, branch/seed0, branch_decay_0.9/seed0: kill it in branch/seed0's second epoch
    metadata = out / "runs" / "branch" / "seed0" / "backup" / "training_metadata.json"
    deadline = time.time() + 900
    while time.time() < deadline and first.poll() is None:
        if metadata.is_file() and metadata.read_text().strip():
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert first.poll() is None, "shard 1/2 ended before it could be killed: " + first.stdout.read()
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    restarted = _worker(setup, out, "1/2")
    outputs = [process.communicate(timeout=1200)[0] for process in (restarted, second)]
    assert restarted.returncode == 0 and second.returncode == 0, outputs
    assert "none/seed0: finished before, skipped" in outputs[0] and "branch/seed0: resuming" in outputs[0]

    events = _events(out)
    for run in RUNS:
        kinds = [e["event"] for e in events if e["run"] == run]
        assert kinds.count("finish") == 1 and kinds.count("start") == 1, (run, kinds)
        assert kinds.count("resume") == (1 if run == "branch/seed0" else 0), (run, kinds)
    assert {e["shard"] for e in events if e["run"].endswith("seed0")} == {"1/2"}
    shared = _table(out)
    assert all(len(seeds) == 2 for seeds, *_ in shared.values())

    # a single process on a copy without the killed run retrains it alone and builds the same table
    alone = tmp_path / "alone"
    shutil.copytree(out, alone)
    shutil.rmtree(alone / "runs" / "branch" / "seed0")
    for name in ("ablation.json", "ablation.md", "ablation.html"):
        (alone / name).unlink()
    args = ["ablate", "--data", str(setup / "data"), "--out", str(alone), "--grid", str(setup / "grid.toml"), *SETTINGS]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "this worker: trained 1, skipped 5 finished, 0 held by other workers" in printed
    _assert_same(_table(alone), shared)
    # and again: nothing left to do, the same table
    assert main(args) == 0
    assert "this worker: trained 0, skipped 6 finished" in capsys.readouterr().out
    _assert_same(_table(alone), shared)
    markdown = (alone / "ablation.md").read_text()
    for name in ("none", "branch", "branch_decay_0.9", "## Protocol", "drift_curves.png", "decay_sweep.png"):
        assert name in markdown

    # the drift monitor: one value per class per epoch for each block, in the logs and drift.json
    with open(out / "runs" / "branch" / "seed1" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    drift = json.loads((out / "runs" / "branch" / "seed1" / "drift.json").read_text())
    assert len(rows) == 2 and len(drift["epochs"]) == 2 and drift["classes"]
    for label in drift["classes"]:
        for block in ("online", "anchor"):
            for key in (f"drift_{block}_{label}", f"drift_start_{block}_{label}", f"separation_{block}_{label}"):
                assert key in rows[0] and all(row[key] != "" for row in rows)
    # with decay 0.999 (no warmup) the anchor block drifts less than the online block
    for seed in (0, 1):
        record = json.loads((out / "runs" / "branch" / f"seed{seed}" / "drift.json").read_text())["epochs"][-1]
        online = np.nanmean([record["online"][c]["drift_start"] for c in record["online"]])
        anchor = np.nanmean([record["anchor"][c]["drift_start"] for c in record["anchor"]])
        print(f"seed {seed}: mean drift from the start, online {online:.4f}, anchor {anchor:.4f}")
        assert anchor < online
