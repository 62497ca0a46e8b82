"""mamsf ablate without training: grids and their errors, shards, claims, the report's numbers
(the same code path as evaluate/compare), and the drift monitor's arithmetic."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.evaluation import evaluate_predictions
from keras_mamsf.evaluation.predictions import Predictions
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.training.ablation import plan_record, write_plan
from keras_mamsf.training.claims import try_claim
from keras_mamsf.training.config import ConfigError, TrainConfig
from keras_mamsf.training.drift import cosine_distance, fisher_separation, select_probe
from keras_mamsf.training.grid import (
    Cell,
    load_grid,
    named_grid,
    parse_shard,
    plan,
    shard_of,
)
from keras_mamsf.utils import write_json_atomic


# -- grids ---------------------------------------------------------------------------------
def test_the_reviewer_grid():
    cells = {cell.name: cell.changes for cell in named_grid("reviewer", TrainConfig())}
    assert list(cells) == ["none", "branch", "shadow", "inplace", "branch_earlier_block", "branch_whole_backbone",
                           "branch_decay_0.99", "branch_decay_0.9999"]
    assert cells["branch_earlier_block"]["anchor_layers"] == ("block6",)
    assert cells["branch_whole_backbone"]["anchor_layers"] == ("stem", *(f"block{n}" for n in range(1, 8)), "top")
    v2 = {cell.name: cell.changes for cell in named_grid("anchored_part", TrainConfig(backbone="efficientnetv2b0"))}
    assert v2["branch_earlier_block"]["anchor_layers"] == ("block5",)
    decay = [cell.name for cell in named_grid("decay", TrainConfig(anchor_decay=0.99))]
    assert decay == ["none", "branch", "branch_decay_0.999", "branch_decay_0.9999"]
    averaging = {cell.name: cell.config(TrainConfig(weight_ema=0.99)) for cell in named_grid("averaging",
                                                                                          TrainConfig(weight_ema=0.99))}
    assert [(c.anchor, c.weight_ema) for c in averaging.values()] == [("none", 0.0), ("branch", 0.0), ("none", 0.99)]
    assert named_grid("averaging", TrainConfig())[2].changes["weight_ema"] == 0.998


def test_help_names_every_grid():
    from keras_mamsf.cli.ablate import GRIDS_HELP
    from keras_mamsf.training.grid import GRIDS

    assert [part.split(":")[0] for part in GRIDS_HELP.split("; ")] == list(GRIDS)


def test_grid_files_toml_and_yaml(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text('[base]\nepochs = 2\n[cells.none]\nanchor = "none"\n[cells."fast_0.99"]\nanchor = "shadow"\n'
                    'anchor_decay = 0.99\n')
    base, cells = load_grid(toml, TrainConfig())
    assert base.epochs == 2 and [c.name for c in cells] == ["none", "fast_0.99"]
    assert cells[1].config(base).anchor_decay == 0.99 and cells[1].config(base).anchor == "shadow"
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text("cells:\n  none: {anchor: none}\n  part: {anchor: branch, anchor_layers: [block6]}\n")
    _, cells = load_grid(yaml_file, TrainConfig())
    assert cells[1].changes == {"anchor": "branch", "anchor_layers": ("block6",)}


@pytest.mark.parametrize("text, message", [
    ('[cells.none]\nanchor = "none"\n[cells.b]\nanchor_decy = 0.9\n',
     r"\[cells.b\]: unknown key 'anchor_decy'; did you mean anchor_decay"),
    ('[cells.none]\nanchor = "none"\n[cells.b]\nanchor = "sometimes"\n',
     r"\[cells.b\]: anchor must be one of branch, shadow, inplace, none; got 'sometimes'"),
    ('[cells.none]\nanchor = "none"\n[cells.b]\nanchor_decay = 1.5\n', r"anchor_decay must be in \[0.0, 1.0\)"),
    ('[cels.none]\nanchor = "none"\n', r"unknown top-level key 'cels'"),
    ('[cells.b]\nanchor = "branch"\n', r"no cell with anchor = \"none\""),
    ('[cells."a b"]\nanchor = "none"\n', r"a cell name is a folder name"),
    ('[cells.none\n', r"not a valid grid file"),
    ('[cells.none]\nanchor = "none"\nseeds = 0.5\n', r"\[cells.none\]: seeds = 0.5: a cell's seeds is how many"),
])
def test_a_bad_grid_fails_before_any_training_in_one_line(tmp_path, capsys, text, message):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    data = tmp_path / "data"
    data.mkdir()  # an empty root: reaching the data would fail differently
    assert main(["ablate", "--data", str(data), "--out", str(tmp_path / "out"), "--grid", str(grid)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("mamsf ablate: error: ")
    assert __import__("re").search(message, error), error
    assert not (tmp_path / "out").exists()


def test_unknown_named_grid_and_bad_shard(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    assert main(["ablate", "--data", str(data), "--out", str(tmp_path / "o"), "--grid", "everything"]) == 1
    assert "unknown grid 'everything': use one of reviewer, modes" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"--shard '3/2': expected I/N"):
        parse_shard("3/2")


def test_shards_cover_every_run_exactly_once():
    cells = [Cell(name, {}) for name in ("none", "a", "b")]
    runs = [name for _, _, name in plan(cells, [0, 1])]
    assert runs == ["none/seed0", "none/seed1", "a/seed0", "a/seed1", "b/seed0", "b/seed1"]
    for count in (1, 2, 4, 7):
        parts = [name for i in range(1, count + 1) for _, _, name in shard_of(plan(cells, [0, 1]), (i, count))]
        assert sorted(parts) == sorted(runs)


# -- claims --------------------------------------------------------------------------------
RACE = ("import sys, time; from keras_mamsf.training.claims import try_claim; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); print(try_claim(sys.argv[1]) is not None)")


def test_exactly_one_of_many_racing_workers_gets_a_run(tmp_path):
    start = __import__("time").time() + 2.0  # all six wake up at the same moment
    workers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "run"), str(start)],
                                stdout=subprocess.PIPE, text=True) for _ in range(6)]
    won = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert sorted(won) == ["False"] * 5 + ["True"]


def test_a_dead_worker_s_claim_is_taken_over(tmp_path):
    run_dir = str(tmp_path / "run")
    held = try_claim(run_dir)
    assert held is not None and try_claim(run_dir) is None  # this (live) process holds it
    held.release()
    assert not os.listdir(run_dir) and try_claim(run_dir).path.endswith("claim.1")  # released: free again
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.rename(os.path.join(run_dir, "claim.1"), os.path.join(run_dir, "claim.1.mine"))
    with open(os.path.join(run_dir, "claim.1"), "w") as handle:
        json.dump({"host": os.uname().nodename, "pid": int(dead.stdout)}, handle)
    taken = try_claim(run_dir)
    assert taken is not None and taken.took_over and taken.path.endswith("claim.2")
    # another host's claim: judged by its age
    with open(os.path.join(run_dir, "claim.3"), "w") as handle:
        json.dump({"host": "elsewhere", "pid": 1}, handle)
    assert try_claim(run_dir, stale_after=3600) is None
    os.utime(os.path.join(run_dir, "claim.3"), (0, 0))
    assert try_claim(run_dir, stale_after=3600).path.endswith("claim.4")


# -- the report ----------------------------------------------------------------------------
POSITIVES = dict(zip(CHESTXRAY14_LABELS, [50, 9, 40, 3, 7, 30, 2, 20, 11, 5, 1, 4, 6, 0]))


def _write_run(run, rng, strength, n=120, few=()):
    """A run folder as `mamsf train` leaves it (predictions, metrics from evaluate_predictions, summary); the
    classes in `few` get 6 test positives."""
    y = (np.random.default_rng(7).random((n, 14)) < 0.25).astype(float)  # the same test images in every run
    for label in few:
        column = CHESTXRAY14_LABELS.index(label)
        y[:, column] = 0
        y[10:15, column] = 1
    y[:2, :] = [[1] * 14, [0] * 14]
    os.makedirs(run, exist_ok=True)
    score = 1 / (1 + np.exp(-(rng.normal(size=y.shape) + strength * y)))
    Predictions(y, score, labels=CHESTXRAY14_LABELS, patient_id=np.repeat(np.arange(n // 2), 2),
                image_index=[f"{i:05d}.png" for i in range(n)]).save(os.path.join(run, "predictions.npz"))
    metrics = evaluate_predictions(Predictions.load(os.path.join(run, "predictions.npz")), n_boot=100, seed=0)
    write_json_atomic(os.path.join(run, "metrics.json"), metrics)
    write_json_atomic(os.path.join(run, "summary.json"), {"train_positives": POSITIVES, "split_sizes": {"train": 1},
                                                          "environment": {"hardware": {"cpus": 2}, "software": {}}})
    return metrics


def _fake_runs(out, cells, seeds, rng):
    for k, cell in enumerate(cells):
        for seed in seeds:
            _write_run(out / "runs" / cell / f"seed{seed}", rng, 0.5 + 0.3 * k)


def train_instead(monkeypatch, fake_train):
    """`mamsf ablate` without images or training: `fake_train` writes each run's outputs."""
    import keras_mamsf.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr("keras_mamsf.data.nih.read_nih", lambda *a, **k: type("Index", (), {"skipped": {}})())


def test_a_failed_run_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    def fake_train(config, data_root, run_dir, **kwargs):
        if config.anchor == "shadow":
            raise RuntimeError("training stopped on a non-finite loss (TerminateOnNaN); see history.csv")
        return {"metrics": _write_run(run_dir, np.random.default_rng(config.seed), 1.0)}

    train_instead(monkeypatch, fake_train)
    grid = tmp_path / "grid.toml"
    grid.write_text('[cells.none]\nanchor = "none"\n[cells.shadow]\nanchor = "shadow"\n[cells.inplace]\n'
                    'anchor = "inplace"\n')
    data = tmp_path / "data"
    data.mkdir()
    args = ["ablate", "--data", str(data), "--out", str(tmp_path / "out"), "--grid", str(grid), "--seeds", "2",
            "--set", "n_boot=50"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "shadow/seed0: FAILED: training stopped on a non-finite loss" in printed
    assert "trained 4, skipped 0 finished, 0 held by other workers, FAILED 2: shadow/seed0, shadow/seed1" in printed
    result = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert result["cells"]["shadow"]["seeds"] == [] and result["cells"]["inplace"]["seeds"] == [0, 1]
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["run"] == "shadow/seed1"] == ["start", "fail"]
    assert main(args) == 1  # the same command retries only the failed runs
    assert "trained 0, skipped 4 finished, 0 held by other workers, FAILED 2" in capsys.readouterr().out


def test_a_cell_may_run_fewer_seeds_than_the_others(tmp_path, monkeypatch, capsys):
    """`seeds = 1` in a cell: that cell trains only the first of --seeds 2; plan.json keeps the count, so
    --report-only rebuilds the same plan and the report lists no pending seed for it."""
    trained = []

    def fake_train(config, data_root, run_dir, **kwargs):
        trained.append(os.path.relpath(run_dir, tmp_path / "out" / "runs"))
        return {"metrics": _write_run(run_dir, np.random.default_rng(config.seed), 1.0)}

    train_instead(monkeypatch, fake_train)
    grid = tmp_path / "grid.toml"
    grid.write_text('[cells.none]\nanchor = "none"\n[cells.shadow]\nanchor = "shadow"\nseeds = 1\n')
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    assert main(["ablate", "--data", str(data), "--out", str(out), "--grid", str(grid), "--seeds", "2", "--set",
                 "n_boot=50"]) == 0
    assert "2 cells x 2 seeds (fewer for shadow 1) = 3 runs" in capsys.readouterr().out
    assert sorted(trained) == [os.path.join("none", "seed0"), os.path.join("none", "seed1"),
                               os.path.join("shadow", "seed0")]
    assert json.loads((out / "plan.json").read_text())["cell_seeds"] == {"shadow": 1}
    assert main(["ablate", "--out", str(out), "--report-only"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert (result["cells"]["shadow"]["seeds"], result["cells"]["shadow"]["pending"]) == ([0], [])
    assert result["cells"]["none"]["seeds"] == [0, 1]
    # judged against none's seed 0 alone: the mean of none's two seeds is an ensemble, better by that alone
    from keras_mamsf.evaluation.evaluate import compare_predictions

    runs = out / "runs"
    shadow, none = (Predictions.load(str(runs / cell / "seed0" / "predictions.npz")) for cell in ("shadow", "none"))
    matched = compare_predictions(shadow, none, n_boot=0)["macro"]["delta_auc"]
    vs_none = result["cells"]["shadow"]["vs_none"]
    assert vs_none["seeds"] == [0] and vs_none["delta_auc"] == pytest.approx(matched, abs=1e-12)
    both = compare_predictions(shadow, Predictions.load(str(out / "cells" / "none" / "predictions.npz")), n_boot=0)
    assert abs(both["macro"]["delta_auc"] - matched) > 1e-6


def test_ablate_says_when_a_config_file_turns_the_drift_monitor_off(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_train(config, data_root, run_dir, **kwargs):
        seen.append(config.drift_monitor)
        return {"metrics": _write_run(run_dir, np.random.default_rng(config.seed), 1.0)}

    train_instead(monkeypatch, fake_train)
    grid = tmp_path / "grid.toml"
    grid.write_text('[cells.none]\nanchor = "none"\n[cells.branch]\nanchor = "branch"\n')
    config = tmp_path / "recipe.toml"
    config.write_text("drift_monitor = false\nn_boot = 50\n")
    data = tmp_path / "data"
    data.mkdir()
    common = ["ablate", "--data", str(data), "--grid", str(grid), "--seeds", "1"]
    assert main(common + ["--out", str(tmp_path / "off"), "--config", str(config)]) == 0
    assert (f"note: the drift monitor is off ({config} sets drift_monitor = false): the report will have no drift "
            "summary; add --set drift_monitor=true for one") in capsys.readouterr().out
    assert seen == [False, False]
    assert main(common + ["--out", str(tmp_path / "on"), "--config", str(config), "--set", "drift_monitor=true"]) == 0
    assert "drift monitor is off" not in capsys.readouterr().out
    assert seen[2:] == [True, True]


def test_report_numbers_equal_evaluate_and_compare(tmp_path, capsys):
    out = tmp_path / "abl"
    cells, seeds = ["none", "branch", "shadow"], [0, 1]
    _fake_runs(out, cells, seeds, np.random.default_rng(0))
    base = TrainConfig(n_boot=200)
    write_plan(str(out), plan_record(base, [Cell("none", {"anchor": "none"}), Cell("branch", {"anchor": "branch"}),
                                            Cell("shadow", {"anchor": "shadow"})], seeds, str(tmp_path)))
    assert main(["ablate", "--out", str(out), "--report-only"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "ablation.json").read_text())
    assert set(result["cells"]) == set(cells) and "shadow" in printed
    assert result["rare_classes"] == ["Emphysema", "Pneumonia", "Infiltration", "Fibrosis", "Edema"]  # Hernia: 0
    for cell in cells:
        entry = result["cells"][cell]
        per_seed = [json.loads((out / "runs" / cell / f"seed{s}" / "metrics.json").read_text()) for s in seeds]
        aucs = [m["macro"]["auc"] for m in per_seed]
        assert entry["macro_auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-12)
        assert entry["macro_auc"]["std"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-12)
        rarest = [m["per_class"]["Emphysema"]["auc"] for m in per_seed]
        assert entry["rare"]["Emphysema"]["mean"] == pytest.approx(np.mean(rarest), abs=1e-12)
    # a seed's figures are what `mamsf evaluate --predictions` says of its predictions
    assert main(["evaluate", "--predictions", str(out / "runs/branch/seed1/predictions.npz"), "--out",
                 str(tmp_path / "eval"), "--n-boot", "100"]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["macro"]["auc"] == result["cells"]["branch"]["per_seed"]["1"]["macro_auc"]
    assert evaluated["macro"]["ap"] == result["cells"]["branch"]["per_seed"]["1"]["macro_ap"]
    assert evaluated["per_class"]["Emphysema"]["auc"] == json.loads(
        (out / "runs/branch/seed1/metrics.json").read_text())["per_class"]["Emphysema"]["auc"]
    capsys.readouterr()
    # the comparison is what `mamsf compare` prints for the cells' seed-mean predictions
    assert main(["compare", str(out / "cells/branch/predictions.npz"), str(out / "cells/none/predictions.npz"),
                 "--json", "--n-boot", "200", "--seed", "0"]) == 0
    compared = json.loads(capsys.readouterr().out)
    vs = result["cells"]["branch"]["vs_none"]
    assert vs["delta_auc"] == compared["macro"]["delta_auc"] and vs["ci"] == compared["macro"]["ci"]
    assert vs["p_value"] == compared["macro"]["p_value"]
    for label, entry in compared["per_class"].items():
        assert vs["per_class"][label]["p_delong"] == entry["p_value"]
        assert vs["per_class"][label]["p_holm"] == entry["p_holm"]
    # the seed-mean file is the mean of the seeds' scores
    seeds_scores = [Predictions.load(out / "runs/branch" / f"seed{s}" / "predictions.npz").y_score for s in seeds]
    np.testing.assert_array_equal(Predictions.load(out / "cells/branch/predictions.npz").y_score,
                                  np.mean(seeds_scores, axis=0))
    assert result["cells"]["none"]["vs_none"] is None
    for name in ("ablation.md", "ablation.html", "delta_forest.png"):
        assert (out / name).is_file()
    markdown = (out / "ablation.md").read_text()
    assert "## Protocol" in markdown and "| optimizer | AdamW" in markdown
    assert result["notes"] == []  # one decay only: nothing to warn about


def test_the_report_warns_when_warmup_hides_the_decay_sweep(tmp_path):
    from keras_mamsf.evaluation.ablation import decay_notes

    cells = [Cell("none", {"anchor": "none"}), Cell("a", {"anchor": "branch", "anchor_decay": 0.99}),
             Cell("b", {"anchor": "branch", "anchor_decay": 0.999})]
    summaries = {"a": {0: {"split_sizes": {"train": 100}}}}
    base = TrainConfig(epochs=3, batch_size=10)  # 30 updates
    (note,) = decay_notes(base, cells, summaries)
    assert "reaches 0.99 only after 999 updates; these runs made 30" in note
    assert f"above {1 - 31 ** (-2 / 3):.4f} acted the same" in note
    assert decay_notes(base.replace(anchor_warmup=False), cells, summaries) == []
    assert decay_notes(base.replace(epochs=100, batch_size=1), cells, summaries) == []  # 10,000 updates


def test_a_partial_ablation_reports_what_has_finished(tmp_path, capsys):
    out = tmp_path / "abl"
    _fake_runs(out, ["none"], [0], np.random.default_rng(1))
    base = TrainConfig(n_boot=50)
    cells = [Cell("none", {"anchor": "none"}), Cell("branch", {"anchor": "branch"})]
    write_plan(str(out), plan_record(base, cells, [0, 1], str(tmp_path)))
    assert main(["ablate", "--out", str(out), "--report-only"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert result["cells"]["none"]["seeds"] == [0] and result["cells"]["none"]["pending"] == [1]
    assert result["cells"]["branch"]["seeds"] == [] and result["cells"]["branch"]["vs_none"] is None
    with pytest.raises(ConfigError, match="holds an ablation with another seeds"):
        write_plan(str(out), plan_record(base, cells, [0, 1, 2], str(tmp_path)))
    # A plan written before a config key existed continues while that key stays at its default.
    older = json.loads((out / "plan.json").read_text())
    del older["base"]["weight_ema"]
    (out / "plan.json").write_text(json.dumps(older))
    write_plan(str(out), plan_record(base, cells, [0, 1], str(tmp_path)))
    with pytest.raises(ConfigError, match="holds an ablation with another base"):
        write_plan(str(out), plan_record(base.replace(weight_ema=0.99), cells, [0, 1], str(tmp_path)))


# -- drift arithmetic ----------------------------------------------------------------------
def test_probe_takes_every_class_rarest_first_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 5)) < [0.5, 0.2, 0.05, 0.01, 0.0]).astype(int)
    probe = select_probe(labels, per_class=4, seed=3)
    assert np.array_equal(probe, select_probe(labels, per_class=4, seed=3))
    counts = labels[probe].sum(axis=0)
    rare = np.zeros((300, 1), int)  # a class with 3 positives: all of them are taken
    rare[[5, 50, 200]] = 1
    with_rare = np.hstack([labels, rare])
    assert with_rare[select_probe(with_rare, per_class=4, seed=3), 5].sum() == with_rare[:, 5].sum()
    assert all(counts[c] >= min(4, labels[:, c].sum()) for c in range(4)) and counts[4] == 0
    assert (labels[probe].sum(axis=1) == 0).sum() == 4  # images without findings: the "rest"


def test_drift_measures_against_an_independent_computation():
    from scipy.spatial.distance import cosine

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    assert cosine_distance(a, b) == pytest.approx(cosine(a, b), abs=1e-12)
    assert np.isnan(cosine_distance(a, np.zeros(16)))
    features = rng.normal(size=(40, 8))
    positive = np.arange(40) < 15
    features[positive] += 1.5
    d = features[positive].mean(0) - features[~positive].mean(0)
    p = features @ d / np.linalg.norm(d)
    expected = (p[positive].mean() - p[~positive].mean()) ** 2 / (p[positive].var() + p[~positive].var())
    assert fisher_separation(features, positive) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(fisher_separation(features, np.arange(40) < 1))


@pytest.mark.parametrize("recipe", ["chestxray14.toml", "chestxray14_10k.toml", "chestxray14_10k_pretrained.toml"])
def test_the_recipe_lists_every_config_key(recipe):
    from pathlib import Path

    import tomllib

    path = Path(__file__).resolve().parents[1] / "configs" / recipe
    flat = {}
    for key, value in tomllib.loads(path.read_text()).items():
        flat.update(value if isinstance(value, dict) else {key: value})
    assert sorted(flat) == sorted(TrainConfig.keys())
    assert TrainConfig.from_file(path) == TrainConfig().replace(**flat)


def test_the_protocol_states_the_augmentation_the_runs_used():
    from keras_mamsf.evaluation.ablation import protocol

    def stated(**changes):
        return protocol(TrainConfig(**changes), [0], {})["augmentation"]

    assert stated() == "flip True, rotation 0.02, zoom 0.08, translation 0.05, contrast 0.15, brightness 0.1"
    assert stated(augment_flip=False) == "rotation 0.02, zoom 0.08, translation 0.05, contrast 0.15, brightness 0.1"
    assert stated(augment_strength=3.0) == ("flip True, rotation 0.06, zoom 0.24, translation 0.15, contrast 0.45, "
                                           "brightness 0.3")
    assert stated(augment=False) == stated(augment_flip=False, augment_strength=0.0) == "none"


def test_the_protocol_names_the_weight_average_when_it_is_on():
    from keras_mamsf.evaluation.ablation import protocol

    assert protocol(TrainConfig(), [0], {})["optimizer"] == "AdamW, learning rate 0.001, weight decay 0.0001"
    assert protocol(TrainConfig(weight_ema=0.998), [0], {})["optimizer"].endswith(", weight moving average 0.998")


def test_the_protocol_says_where_the_batchnorm_statistics_come_from():
    from keras_mamsf.evaluation.ablation import protocol

    assert protocol(TrainConfig(), [0], {})["batchnorm"] == "the moving statistics of training (no re-estimation)"
    assert protocol(TrainConfig(precise_bn_images=512), [0], {})["batchnorm"] == (
        "statistics re-estimated from 512 unaugmented training images after training")


def test_a_killed_attempt_counts_to_its_last_finished_epoch(tmp_path):
    """Compute per run: a run killed and resumed counts its first attempt from its start to the last write of that
    attempt's TensorBoard file (its last finished epoch), then the resumed attempt to its finish."""
    from keras_mamsf.evaluation.ablation import run_seconds

    logs = tmp_path / "runs" / "branch" / "seed0" / "logs" / "train"
    logs.mkdir(parents=True)
    for name, written in (("events.1", 1500.0), ("events.2", 5200.0)):  # the killed attempt's, the resumed one's
        (logs / name).write_bytes(b"")
        os.utime(logs / name, (written, written))
    events = [{"run": "branch/seed0", "event": "start", "worker": "a", "time": 1000.0},
              {"run": "branch/seed0", "event": "resume", "worker": "b", "time": 4000.0},
              {"run": "branch/seed0", "event": "finish", "worker": "b", "time": 5300.0},
              {"run": "branch/seed1", "event": "start", "worker": "b", "time": 5300.0},
              {"run": "branch/seed1", "event": "finish", "worker": "b", "time": 5900.0}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    assert run_seconds(str(tmp_path), {0: "branch/seed0", 1: "branch/seed1"}) == {
        "per_run": {"0": 500.0 + 1300.0, "1": 600.0}, "total": 2400.0}


def test_a_rare_class_difference_must_survive_holm_to_be_a_verdict():
    """An interval that excludes 0 is "better" / "worse" only where the class's Holm-adjusted p is below 0.05 too
    (the grid's first such interval, [-0.1260, -0.0000], had Holm p 0.77); the macro figure, one test, needs none."""
    from keras_mamsf.evaluation.ablation import verdict

    assert verdict(-0.069, [-0.126, -0.00003], 24, 0.77) == (
        "not shown after Holm (-0.0690 [-0.1260, -0.0000] excludes 0, adjusted p 0.77)")
    assert verdict(-0.069, [-0.126, -0.01], 24, 0.01) == "worse: -0.0690 [-0.1260, -0.0100]"
    assert verdict(0.02, [0.005, 0.04]) == "better: +0.0200 [+0.0050, +0.0400]"
    assert verdict(0.02, [-0.005, 0.04], 24, 0.5).startswith("no detectable difference (this design detects 0.032")
    assert verdict(0.02, [0.005, 0.04], 7, 0.01) == "cannot be judged on this split (7 test positives, 10 needed)"


def test_the_pretrained_grid_s_report_judges_against_both_baselines_with_power_drift_and_compute(tmp_path):
    """Issue 40's report: each cell against `none` and against the whole-model average (`weight_ema`), every
    "no detectable difference" with its minimum detectable difference, no verdict for a class under 10 test
    positives, the per-epoch drift of each rare class (mean ± sd over seeds), the start's weights and the test
    split in the protocol, and each run's wall time from events.jsonl."""
    from keras_mamsf.evaluation.ablation import summarize_ablation, write_ablation

    out = tmp_path / "abl"
    cells = [Cell("none", {"anchor": "none"}), Cell("branch", {"anchor": "branch"}),
             Cell("weight_ema", {"anchor": "none", "weight_ema": 0.998})]
    rng = np.random.default_rng(3)
    runs, events = {}, []
    start = {"weights": "imagenet", "sha256": "57" * 32}
    for k, cell in enumerate(cells):
        for seed in (0, 1):
            folder = out / "runs" / cell.name / f"seed{seed}"
            _write_run(folder, rng, 0.5 + 0.2 * k, few=("Emphysema",))
            write_json_atomic(str(folder / "initial_weights.json"), start)
            epochs = [{"epoch": e, "online": {c: {"drift_start": 0.1 * e + 0.01 * seed + 0.001 * k}
                                              for c in CHESTXRAY14_LABELS},
                       "anchor": {c: {"drift_start": 0.05 * e + 0.01 * seed} for c in CHESTXRAY14_LABELS}}
                      for e in (1, 2, 3)]
            write_json_atomic(str(folder / "drift.json"), {"anchor_mode": None if cell.name != "branch" else "branch",
                                                           "classes": list(CHESTXRAY14_LABELS), "epochs": epochs})
            runs.setdefault(cell.name, {})[seed] = str(folder)
            name, t0 = f"{cell.name}/seed{seed}", 1000.0 * (2 * k + seed)
            events += [{"run": name, "event": "start", "worker": "a", "time": t0},
                       {"run": name, "event": "finish", "worker": "a", "time": t0 + 600 + 60 * seed}]
    with open(out / "events.jsonl", "w") as handle:
        handle.writelines(json.dumps(event) + "\n" for event in events)
    base = TrainConfig(n_boot=300)
    result = summarize_ablation(base, cells, [0, 1], runs, str(out))
    assert result["baseline"] == "none" and result["averaged_baseline"] == "weight_ema"
    branch = result["cells"]["branch"]
    assert branch["vs_none"] and branch["vs_weight_ema"] and result["cells"]["none"]["vs_weight_ema"]
    assert result["cells"]["weight_ema"]["vs_weight_ema"] is None and result["cells"]["none"]["vs_none"] is None
    for key in ("vs_none", "vs_weight_ema"):
        entry = branch[key]
        low, high = entry["ci"]
        assert entry["mdd"] == pytest.approx((1.959964 + 0.841621) * (high - low) / (2 * 1.959964), rel=1e-6)
        if low <= 0 <= high:
            assert entry["verdict"] == (f"no detectable difference (this design detects {entry['mdd']:.3f} or "
                                        "more with 80% power at the 5% level)")
        else:
            assert entry["verdict"] == (f"{'better' if low > 0 else 'worse'}: {entry['delta_auc']:+.4f} "
                                        f"[{low:+.4f}, {high:+.4f}]")
    assert result["test_positives"]["Emphysema"] == 6 and "Emphysema" in result["rare_classes"]
    assert branch["vs_none"]["rare"]["Emphysema"] == {
        "test_positives": 6, "mdd": None, "verdict": "cannot be judged on this split (6 test positives, 10 needed)"}
    judged = next(label for label in result["rare_classes"] if label != "Emphysema")
    assert branch["vs_none"]["rare"][judged]["mdd"] is not None
    # drift per epoch: mean and sd over the two seeds, per class and block
    points = branch["drift_by_epoch"]["online"]["Pneumonia"]
    assert [p[0] for p in points] == [1, 2, 3]
    for epoch, mean, sd, n in points:
        values = [0.1 * epoch + 0.001, 0.1 * epoch + 0.011]
        assert (mean, sd, n) == (pytest.approx(np.mean(values)), pytest.approx(np.std(values, ddof=1)), 2)
    assert "anchor" in branch["drift_by_epoch"] and "anchor" not in result["cells"]["none"]["drift_by_epoch"]
    # the protocol names the start and the test split; the compute is each run's start-to-finish
    assert result["protocol"]["initial_weights"] == [start]
    assert result["protocol"]["test"] == {"images": 120, "patients": 60}
    assert branch["compute"] == {"per_run": {"0": 600.0, "1": 660.0}, "total": 1260.0}
    assert result["compute"] == {"runs": 6, "total_seconds": 3 * 1260.0}
    write_ablation(str(out), result, base)
    markdown = (out / "ablation.md").read_text()
    assert "## Verdicts (macro AUC)" in markdown and "| cell | vs none | vs weight_ema |" in markdown
    assert "| none | baseline | " in markdown and "| weight_ema | " in markdown
    assert "cannot be judged on this split (6 test positives, 10 needed)" in markdown
    assert "## Drift from the start per epoch, rare classes" in markdown and "| epoch 3 |" in markdown
    assert "6 runs, 1.05 hours in all" in markdown
