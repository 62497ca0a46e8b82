"""The ablation report: per cell, figures over seeds, the paired comparison with the `none` cell,
the minority-class drift, and the protocol. One code path with `evaluate` and `compare`:

- a run's figures are its `metrics.json` (written by `evaluate_predictions`, as `mamsf evaluate
  --predictions RUN/predictions.npz` writes it);
- a cell's comparison with `none` is `compare_predictions` on the cells' seed-mean predictions,
  written to `OUT/cells/CELL/predictions.npz`, so `mamsf compare OUT/cells/X/predictions.npz
  OUT/cells/none/predictions.npz` prints the same numbers.

Means and standard deviations are over the finished seeds (sample sd, n - 1; none with one seed).
"""

import json
import math
import os

import numpy as np

from keras_mamsf.anchor.modes import BRANCH, NONE
from keras_mamsf.evaluation.evaluate import compare_predictions
from keras_mamsf.evaluation.predictions import Predictions, check_same_images
from keras_mamsf.evaluation.report import to_html, to_markdown
from keras_mamsf.utils import write_bytes_atomic, write_json_atomic, write_text_atomic

RARE_CLASSES = 5
# A class with fewer test positives gets no verdict, only "cannot be judged on this split".
MIN_TEST_POSITIVES = 10
# z of a two-sided 5% test plus z of 80% power: a true difference this many standard errors from 0 is found 80% of
# the time.
_DETECTABLE_Z = 1.959963984540054 + 0.8416212335729143


def minimum_detectable_difference(ci):
    """The smallest difference the design would find with 80% power at the 5% level (two-sided): (z_0.975 + z_0.8)
    standard errors, the standard error read from the observed paired-bootstrap 95% interval as its width / (2 x
    1.96) (the normal approximation to the bootstrap distribution); None without an interval."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return float(_DETECTABLE_Z * (ci[1] - ci[0]) / (2 * 1.959963984540054))


def verdict(delta, ci, positives=None, p_adjusted=None):
    """Plain words for one paired difference: "better" / "worse" (with the difference and its interval) when its 95%
    interval excludes 0, else "no detectable difference" with the design's minimum detectable difference; for a
    class with fewer than `MIN_TEST_POSITIVES` test positives, "cannot be judged on this split".

    `p_adjusted`: for one class among several, its multiplicity-adjusted p-value (Holm over the classes, DeLong).
    An interval that excludes 0 while the adjusted p is 0.05 or more is "not shown after Holm": among 13 classes
    one such interval is expected by chance (the pretrained grid's Cardiomegaly, branch against weight_ema,
    [-0.1260, -0.0000] with DeLong p 0.066, Holm 0.77, was one)."""
    if positives is not None and positives < MIN_TEST_POSITIVES:
        return f"cannot be judged on this split ({positives} test positives, {MIN_TEST_POSITIVES} needed)"
    if delta is None or not ci or ci[0] is None:
        return "not judged (no interval)"
    if ci[0] > 0 or ci[1] < 0:
        shown = f"{delta:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"
        if p_adjusted is not None and p_adjusted >= 0.05:
            return f"not shown after Holm ({shown} excludes 0, adjusted p {p_adjusted:.2f})"
        return f"{'better' if ci[0] > 0 else 'worse'}: {shown}"
    return (f"no detectable difference (this design detects {minimum_detectable_difference(ci):.3f} or more with "
            "80% power at the 5% level)")


def mean_sd(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values)}


def _load_json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def rarest_classes(train_positives, count=RARE_CLASSES):
    """The `count` classes with the fewest training positives (at least one), rarest first."""
    present = [(n, i, label) for i, (label, n) in enumerate(train_positives.items()) if n > 0]
    return [label for _, _, label in sorted(present)[:count]]


def seed_mean(predictions, source):
    """The mean scores of one cell's seeds on the same test images."""
    first = predictions[0]
    for other in predictions[1:]:
        check_same_images(first, other)
    return Predictions(first.y_true, np.mean([p.y_score for p in predictions], axis=0), labels=first.labels,
                       patient_id=first.patient_id, image_index=first.image_index, source=source)


def _drift(runs, classes):
    """Minority-class drift from the start, per block: the last epoch's mean over `classes` and seeds,
    and the curve (epoch, mean over classes and seeds)."""
    records = [r for r in (_load_json(os.path.join(d, "drift.json")) for d in runs) if r and r["epochs"]]
    if not records:
        return None
    result = {"classes": [c for c in classes if c in records[0]["classes"]], "seeds": len(records)}
    for block in ("online", "anchor"):
        if block == "anchor" and records[0].get("anchor_mode") is None:
            result[block] = None
            continue
        per_epoch = {}
        for record in records:
            for epoch in record["epochs"]:
                values = [epoch[block][c]["drift_start"] for c in result["classes"]]
                values = [v for v in values if v is not None]
                if values:
                    per_epoch.setdefault(epoch["epoch"], []).append(float(np.mean(values)))
        last = max(per_epoch) if per_epoch else None
        result[block] = {"final": mean_sd(per_epoch[last]) if last else mean_sd([]), "epoch": last,
                         "curve": [[e, float(np.mean(v))] for e, v in sorted(per_epoch.items())]}
    return result


def _comparison(cell, other, scores, means, rare, positives, n_boot, seed):
    """A cell's seed-mean predictions against another cell's on the same images (`compare_predictions`), with the
    minimum detectable difference and a verdict for the macro figure and each rare class.

    Both means are over the seeds both cells have finished: the mean of more seeds' scores is an ensemble of more
    runs and scores higher by that alone (the pretrained grid's `none`, 3 seeds with sd 0.020, gained about 0.01
    macro AUC by it), so a 2-seed cell against a 3-seed one would be judged against a better ensemble. Cells
    without a seed in common are compared over all their seeds (`seeds` is then empty). `scores` holds each
    cell's loaded per-seed `Predictions` (`{cell: {seed: Predictions}}`)."""
    common = sorted(set(scores[cell]) & set(scores[other]))
    pair = [means[name] if common == sorted(scores[name]) or not common else
            seed_mean([scores[name][s] for s in common], f"{name}: mean over seeds {common}")
            for name in (cell, other)]
    comparison = compare_predictions(*pair, n_boot=n_boot, seed=seed)
    macro = comparison["macro"]
    result = {"seeds": common, "delta_auc": macro["delta_auc"], "ci": macro["ci"], "p_value": macro["p_value"],
              "mdd": minimum_detectable_difference(macro["ci"]), "verdict": verdict(macro["delta_auc"], macro["ci"]),
              "per_class": {label: {"delta_auc": e["delta_auc"], "ci": e["ci"], "p_delong": e["p_value"],
                                    "p_holm": e["p_holm"], "interval": e.get("interval")}
                            for label, e in comparison["per_class"].items()},
              "rare": {}, "predictions": os.path.join("cells", cell, "predictions.npz")}
    for label in rare:
        entry = result["per_class"].get(label) or {}
        result["rare"][label] = {"test_positives": positives.get(label),
                                 "mdd": None if (positives.get(label) or 0) < MIN_TEST_POSITIVES
                                 else minimum_detectable_difference(entry.get("ci")),
                                 "verdict": verdict(entry.get("delta_auc"), entry.get("ci"), positives.get(label),
                                                    entry.get("p_holm"))}
    return result


def summarize_ablation(base, cells, seeds, runs, out_dir, n_boot=None, seed=0):
    """The `ablation.json` dict from the finished `runs` (`{cell: {seed: run folder}}`); writes each
    cell's seed-mean `predictions.npz` under `out_dir/cells/`."""
    n_boot = base.n_boot if n_boot is None else n_boot
    summaries = {name: {s: _load_json(os.path.join(d, "summary.json")) for s, d in by_seed.items()}
                 for name, by_seed in runs.items()}
    train_positives = next((s["train_positives"] for by_seed in summaries.values() for s in by_seed.values()), {})
    rare = rarest_classes(train_positives)
    scores = {name: {s: Predictions.load(os.path.join(d, "predictions.npz")) for s, d in by_seed.items()}
              for name, by_seed in runs.items() if by_seed}
    means = {}
    for cell in cells:
        by_seed = scores.get(cell.name, {})
        if by_seed:
            mean = seed_mean([by_seed[s] for s in sorted(by_seed)], f"{cell.name}: mean over seeds {sorted(by_seed)}")
            os.makedirs(os.path.join(out_dir, "cells", cell.name), exist_ok=True)
            mean.save(os.path.join(out_dir, "cells", cell.name, "predictions.npz"))
            means[cell.name] = Predictions.load(os.path.join(out_dir, "cells", cell.name, "predictions.npz"))
    configs = {c.name: c.config(base) for c in cells}
    unanchored = [name for name, c in configs.items() if c.anchor == NONE.name]
    baseline = next((name for name in unanchored if not configs[name].weight_ema), next(iter(unanchored), None))
    # the second baseline any EMA claim has to beat: the whole model's weights averaged, no anchor
    averaged = next((name for name in unanchored if configs[name].weight_ema and name != baseline), None)
    reference = means.get(baseline) or next(iter(means.values()), None)
    positives = {} if reference is None else {label: int(n) for label, n in
                                              zip(reference.labels, np.asarray(reference.y_true).sum(axis=0))}
    table = {}
    for cell in cells:
        by_seed = runs.get(cell.name, {})
        metrics = [_load_json(os.path.join(by_seed[s], "metrics.json")) for s in sorted(by_seed)]
        entry = {
            "config": {key: list(v) if isinstance(v, tuple) else v for key, v in cell.changes.items()},
            "seeds": sorted(by_seed),
            "pending": [s for s in cell.seeds_of(seeds) if s not in by_seed],
            "macro_auc": mean_sd([m["macro"]["auc"] for m in metrics]),
            "macro_ap": mean_sd([m["macro"]["ap"] for m in metrics]),
            "rare": {label: mean_sd([m["per_class"][label]["auc"] for m in metrics]) for label in rare},
            "per_seed": {str(s): {"macro_auc": m["macro"]["auc"], "macro_ap": m["macro"]["ap"]}
                         for s, m in zip(sorted(by_seed), metrics)},
            "vs_none": None,
            "vs_weight_ema": None,
            "drift": _drift([by_seed[s] for s in sorted(by_seed)], rare),
            "drift_by_epoch": drift_by_epoch([by_seed[s] for s in sorted(by_seed)], rare),
            "compute": run_seconds(out_dir, {s: f"{cell.name}/seed{s}" for s in sorted(by_seed)}),
        }
        for key, other in (("vs_none", baseline), ("vs_weight_ema", averaged)):
            if other and cell.name != other and cell.name in means and other in means:
                entry[key] = _comparison(cell.name, other, scores, means, rare, positives, n_boot, seed)
        table[cell.name] = entry
    seconds = [v for entry in table.values() for v in (entry["compute"] or {}).get("per_run", {}).values()]
    return {"cells": table, "baseline": baseline, "averaged_baseline": averaged, "rare_classes": rare,
            "train_positives": train_positives, "test_positives": positives,
            "compute": {"runs": len(seconds), "total_seconds": float(sum(seconds)) if seconds else None},
            "notes": decay_notes(base, cells, summaries),
            "comparison": {"n_boot": int(n_boot), "seed": int(seed), "what": "seed-mean scores of a cell minus "
                           "those of the none cell on the same test images, both over the seeds both cells have "
                           "(`seeds`); paired bootstrap CI and p (macro), DeLong p per class, Holm-adjusted"},
            "protocol": dict(protocol(base, seeds, summaries), **_start_and_test(runs, reference))}


def _start_and_test(runs, reference):
    """What the runs started from (their `initial_weights.json`: one SHA-256 for every run, or each one found) and
    the test split's images and patients."""
    sources = {}
    for by_seed in runs.values():
        for folder in by_seed.values():
            record = _load_json(os.path.join(folder, "initial_weights.json"))
            if record is not None:
                sources[json.dumps(record, sort_keys=True)] = record
    test = None
    if reference is not None:
        patients = reference.patient_id
        test = {"images": int(len(reference.y_true)),
                "patients": None if patients is None else int(len(set(np.asarray(patients).tolist())))}
    return {"initial_weights": list(sources.values()), "test": test}


def drift_by_epoch(runs, classes):
    """`{block: {class: [[epoch, mean, sd, n], ...]}}`: each rare class's cosine distance from the start per epoch,
    mean and sd over seeds (drift.json of each run); None without drift records."""
    records = [r for r in (_load_json(os.path.join(d, "drift.json")) for d in runs) if r and r["epochs"]]
    if not records:
        return None
    result = {}
    for block in ("online", "anchor"):
        if block == "anchor" and records[0].get("anchor_mode") is None:
            continue
        per_class = {}
        for label in classes:
            by_epoch = {}
            for record in records:
                for epoch in record["epochs"]:
                    value = (epoch.get(block) or {}).get(label, {}).get("drift_start")
                    if value is not None:
                        by_epoch.setdefault(epoch["epoch"], []).append(float(value))
            if by_epoch:
                per_class[label] = [[e, *(lambda m: [m["mean"], m["std"], m["n"]])(mean_sd(v))]
                                    for e, v in sorted(by_epoch.items())]
        result[block] = per_class
    return result


def run_seconds(out_dir, names):
    """`{"per_run": {seed: seconds}, "total": seconds}` from `events.jsonl`: each run's time from its start (or
    resume) to its finish or failure, summed over its attempts; None when no run has both ends logged.

    A killed attempt logs no end. When a later attempt resumes the run, the killed one counts from its start to
    its last finished epoch: the last write of a TensorBoard file of the run (`logs/`) between the two (each
    attempt's `fit` writes files of its own, and writes them at every epoch's end). The part-epoch a kill cuts
    off is not counted (the run repeats it, and that repeat is)."""
    path = os.path.join(out_dir, "events.jsonl")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    per_run = {}
    for seed, name in names.items():
        writes = _epoch_writes(os.path.join(out_dir, "runs", *name.split("/")))
        opened, total = {}, 0.0
        for event in (e for e in events if e["run"] == name):
            if event["event"] in ("start", "resume"):
                for began in opened.values():  # an attempt still open when another begins was killed
                    total += max([t - began for t in writes if began <= t < event["time"]], default=0.0)
                opened = {event["worker"]: event["time"]}
            elif event["event"] in ("finish", "fail") and event["worker"] in opened:
                total += event["time"] - opened.pop(event["worker"])
        if total:
            per_run[str(seed)] = round(total, 1)
    return {"per_run": per_run, "total": round(sum(per_run.values()), 1)} if per_run else None


def _epoch_writes(run_dir):
    """The modification times of a run's TensorBoard files (`logs/`, any depth)."""
    times = []
    for folder, _, files in os.walk(os.path.join(run_dir, "logs")):
        times += [os.path.getmtime(os.path.join(folder, name)) for name in files]
    return times


def decay_notes(base, cells, summaries):
    """A warning when the warmup keeps every swept decay from binding: with warmup, m_t = min(m, 1 - (1 +
    t / gamma)^-power) reaches m only after t = gamma * ((1 - m)^(-1 / power) - 1) updates, so a shorter run
    cannot tell the decays apart (their cells then train identically)."""
    finished = [s for by_seed in summaries.values() for s in by_seed.values() if s and s.get("split_sizes")]
    configs = [cell.config(base) for cell in cells]
    warm = [c for c in configs if c.anchor != NONE.name and c.anchor_warmup]
    if not finished or len({c.anchor_decay for c in warm}) < 2:
        return []
    updates = base.epochs * math.ceil(finished[0]["split_sizes"]["train"] / base.batch_size)
    lowest = min(c.anchor_decay for c in warm)
    needed = (1.0 - lowest) ** (-1.0 / (2.0 / 3.0)) - 1.0  # build_model's default warmup gamma 1, power 2/3
    if updates >= needed:
        return []
    return [f"Decay sweep caveat: with anchor_warmup the momentum is min(decay, 1 - (1 + t)^(-2/3)), which reaches "
            f"{lowest} only after {needed:,.0f} updates; these runs made {updates:,}, so every decay above "
            f"{1.0 - (1.0 + updates) ** (-2.0 / 3.0):.4f} acted the same. Train longer or set anchor_warmup = false "
            "to compare decays."]


def protocol(base, seeds, summaries):
    """The protocol every report states (the reviewer's second major comment)."""
    from keras_mamsf.data.pipeline import augmentation_settings

    finished = [s for by_seed in summaries.values() for s in by_seed.values() if s]
    environments = {json.dumps(s.get("environment"), sort_keys=True) for s in finished}
    sizes = finished[0]["split_sizes"] if finished else None
    arguments = base.augmentation_arguments()
    settings = {} if arguments is None else augmentation_settings(**arguments)
    augmentation = ", ".join(f"{k} {v}" for k, v in settings.items() if v) or "none"
    return {
        "data": {"split": base.split, "val_fraction": base.val_fraction, "split_seed": base.split_seed,
                 "view": base.view, "images": sizes, "sampling": "class-aware" if base.class_aware else "uniform"},
        "preprocessing": f"8-bit grayscale, area-resized to {base.image_size} px, pixels 0..255 into the model "
                         f"({base.channels} channel(s); grayscale tiled to RGB inside the model)",
        "model": {"backbone": base.backbone, "weights": base.weights, "fusion_filters": base.fusion_filters,
                  "fusion_kernels": list(base.fusion_kernels), "dropout": base.dropout,
                  "anchor_warmup": base.anchor_warmup},
        "image_size": base.image_size,
        "augmentation": augmentation,
        "loss": base.loss,
        "optimizer": f"AdamW, learning rate {base.learning_rate}, weight decay {base.weight_decay}"
                     + (f", weight moving average {base.weight_ema}" if base.weight_ema else ""),
        "schedule": f"linear warmup over {base.warmup_epochs} epoch(s), then cosine decay to 0",
        "epochs": base.epochs,
        "batch_size": base.batch_size,
        "seeds": list(seeds),
        "dtype_policy": base.dtype_policy,
        "batchnorm": (f"statistics re-estimated from {base.precise_bn_images} unaugmented training images after "
                      "training" if base.precise_bn_images else "the moving statistics of training (no re-estimation)"),
        "selection": "best validation macro AUC checkpoint; thresholds chosen on validation; figures on the test split",
        "bootstrap": f"{base.n_boot} patient-level resamples per run",
        "environments": [json.loads(e) for e in sorted(environments)],
    }


# -- rendering ---------------------------------------------------------------------------
def _ms(entry, digits=3):
    if entry is None or entry["mean"] is None:
        return "n/a"
    sd = "" if entry["std"] is None else f" ± {entry['std']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}{sd}"


def _changes(config):
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "(base)"


def ablation_blocks(result, images):
    from keras_mamsf.evaluation.plots import value_text

    cells = result["cells"]
    rare = result["rare_classes"]
    blocks = [("h1", "Ablation"),
              ("p", f"Each cell changes only its own keys of the base config; every cell-seed is one `mamsf train` "
                    f"run with the same data, split, budget and seeds. Mean ± sd over seeds (sample sd). "
                    f"Rare classes: the {len(rare)} with the fewest training positives. "
                    f"Comparison with `{result['baseline']}`: {result['comparison']['what']} "
                    f"({result['comparison']['n_boot']} resamples, seed {result['comparison']['seed']}).")]
    blocks += [("p", note) for note in result.get("notes", [])]
    header = ["cell", "changes", "seeds", "macro AUC", "macro AP"] + [f"AUC {label}" for label in rare] + [
        "delta macro AUC vs none [95% CI]", "p"]
    rows = []
    for name, entry in cells.items():
        vs = entry["vs_none"]
        seeds = f"{len(entry['seeds'])}" + (f" (+{len(entry['pending'])} pending)" if entry["pending"] else "")
        rows.append([name, _changes(entry["config"]), seeds, _ms(entry["macro_auc"]), _ms(entry["macro_ap"])]
                    + [_ms(entry["rare"][label]) for label in rare]
                    + ["baseline" if name == result["baseline"] else
                       ("n/a" if vs is None else value_text(vs["delta_auc"], vs["ci"], 4)),
                       "" if vs is None else f"{vs['p_value']:.4g}"])
    blocks.append(("table", header, rows))
    compared = [name for name, entry in cells.items() if entry["vs_none"]]
    if compared:
        labels = list(cells[compared[0]]["vs_none"]["per_class"])
        blocks += [("h2", "Per class: delta AUC vs none (DeLong p, Holm-adjusted)"),
                   ("table", ["class"] + compared,
                    [[label] + [_delta_p(cells[name]["vs_none"]["per_class"][label]) for name in compared]
                     for label in labels])]
    for key, title in (("delta_forest.png", "Delta macro AUC vs none by cell"),
                       ("decay_sweep.png", "Decay sweep"), ("drift_curves.png", "Minority-class drift")):
        if key in images:
            blocks.append(("img", key, title, images[key]))
    blocks += _verdict_blocks(result)
    drift_rows = [[name, _ms((entry["drift"]["online"] or {}).get("final")),
                   _ms((entry["drift"]["anchor"] or {}).get("final")) if entry["drift"]["anchor"]
                   else "n/a (no anchor)"]
                  for name, entry in cells.items() if entry["drift"]]
    if drift_rows:
        blocks += [("h2", "Feature drift of the minority classes"),
                   ("p", "Cosine distance of each class centroid from its value at the start of training, at the last "
                         "epoch, averaged over the rare classes in the probe (DriftMonitor); mean ± sd over seeds."),
                   ("table", ["cell", "online block", "anchor block"], drift_rows)]
    blocks += _drift_epoch_blocks(result)
    blocks += _compute_blocks(result)
    blocks += [("h2", "Protocol"), ("table", ["", ""], _protocol_rows(result["protocol"]))]
    return blocks


def _verdict_blocks(result):
    """The verdicts in plain words, each "no detectable difference" with the design's minimum detectable
    difference; per rare class, none for a class under `MIN_TEST_POSITIVES` test positives."""
    cells, rare = result["cells"], result["rare_classes"]
    keys = [("vs_none", result["baseline"]), ("vs_weight_ema", result.get("averaged_baseline"))]
    keys = [(key, name) for key, name in keys if name and any(e.get(key) for e in cells.values())]
    if not keys:
        return []
    rows = [[name] + ["baseline" if name == other else (e.get(key) or {}).get("verdict") or "n/a"
                      for key, other in keys]
            for name, e in cells.items() if any(e.get(key) for key, _ in keys)]
    blocks = [("h2", "Verdicts (macro AUC)"),
              ("p", "Each cell's seed-mean scores against the baseline's on the same test images; the minimum "
                    "detectable difference is (1.96 + 0.84) standard errors of the paired bootstrap (80% power, 5% "
                    "level)."),
              ("table", ["cell"] + [f"vs {name}" for _, name in keys], rows)]
    positives = result.get("test_positives") or {}
    rare_rows = [[f"{name} vs {other}"] + [(e[key]["rare"].get(label) or {}).get("verdict", "n/a") for label in rare]
                 for key, other in keys for name, e in cells.items() if e.get(key) and e[key].get("rare")]
    if rare_rows:
        blocks += [("h2", "Verdicts per rare class (paired bootstrap interval of the AUC difference; a difference "
                          "is shown only where the Holm-adjusted DeLong p over the classes is below 0.05 too)"),
                   ("table", ["comparison"] + [f"{label} [{positives.get(label, '?')}]" for label in rare],
                    rare_rows)]
    return blocks


def _drift_epoch_blocks(result):
    rows = []
    for name, entry in result["cells"].items():
        for block, per_class in (entry.get("drift_by_epoch") or {}).items():
            for label, points in per_class.items():
                rows.append([name, block, label] + [_ms({"mean": m, "std": sd}) for _, m, sd, _ in points])
    if not rows:
        return []
    epochs = max(len(row) for row in rows) - 3
    rows = [row + [""] * (epochs + 3 - len(row)) for row in rows]
    return [("h2", "Drift from the start per epoch, rare classes"),
            ("p", "Cosine distance of each class centroid of the pooled block features from its value before the "
                  "first step (DriftMonitor), per epoch; mean ± sd over seeds."),
            ("table", ["cell", "block", "class"] + [f"epoch {k}" for k in range(1, epochs + 1)], rows)]


def _compute_blocks(result):
    rows = [[name, ", ".join(f"{seconds / 60:.1f}" for seconds in entry["compute"]["per_run"].values()),
             f"{entry['compute']['total'] / 60:.1f}"]
            for name, entry in result["cells"].items() if entry.get("compute")]
    if not rows:
        return []
    total = (result.get("compute") or {}).get("total_seconds") or 0.0
    return [("h2", "Compute"),
            ("p", f"Wall time of each run from its start to its finish (events.jsonl; a resumed run's attempts "
                  "summed, a killed attempt to its last finished epoch): "
                  f"{result['compute']['runs']} runs, {total / 3600:.2f} hours in all."),
            ("table", ["cell", "minutes per run", "minutes in all"], rows)]


def _delta_p(entry):
    if entry["delta_auc"] is None:
        return "n/a"
    if entry["p_delong"] is None:
        return f"{entry['delta_auc']:+.4f} ({entry.get('interval') or 'no test'})"
    return f"{entry['delta_auc']:+.4f} (p {entry['p_delong']:.3g}, Holm {entry['p_holm']:.3g})"


def _protocol_rows(record):
    rows = []
    for key, value in record.items():
        if key == "environments":
            for k, environment in enumerate(value, 1):
                hardware = environment["hardware"] if environment else {}
                software = environment["software"] if environment else {}
                rows.append([f"hardware {k}", ", ".join(f"{a}: {b}" for a, b in hardware.items())])
                rows.append([f"software {k}", ", ".join(f"{a} {b}" for a, b in software.items())])
            continue
        text = ", ".join(f"{a}: {_plain(b)}" for a, b in value.items()) if isinstance(value, dict) else _plain(value)
        rows.append([key, text])
    return rows


def _plain(value):
    if isinstance(value, dict):
        return " / ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def ablation_images(result, base):
    from keras_mamsf.evaluation import plots

    cells = result["cells"]
    images = {}
    rows = [(name, e["vs_none"]["delta_auc"], e["vs_none"]["ci"]) for name, e in cells.items() if e["vs_none"]]
    if rows:
        images["delta_forest.png"] = plots.forest(rows, "Seed-mean macro AUC minus the none cell's, 95% CI",
                                                  "delta macro AUC", reference=0.0)
    sweep = [(e["config"].get("anchor_decay", base.anchor_decay), e["macro_auc"]["mean"], e["macro_auc"]["std"])
             for e in cells.values() if e["config"].get("anchor", base.anchor) == BRANCH.name
             and not e["config"].get("anchor_layers") and e["macro_auc"]["mean"] is not None]
    if len(sweep) >= 2:
        none = cells.get(result["baseline"], {}).get("macro_auc") or {}
        images["decay_sweep.png"] = plots.sweep(sweep, (none.get("mean"), none.get("std")),
                                                "Branch anchor on the final block: macro AUC by decay (mean ± sd)",
                                                "anchor decay", "macro AUC")
    panels = {}
    for block in ("online", "anchor"):
        series = {name: [(0, 0.0)] + [tuple(p) for p in e["drift"][block]["curve"]]
                  for name, e in cells.items() if e["drift"] and e["drift"].get(block)}
        if series:
            panels[f"{block} block"] = series
    if panels:
        images["drift_curves.png"] = plots.line_panels(
            panels, "Drift of the rare classes from the start (mean over classes and seeds)", "epoch", "drift")
    return images


def write_ablation(out_dir, result, base):
    """Writes ablation.json, .md, .html and the PNGs atomically; returns their paths. A report from fewer
    finished runs never replaces one from more (workers finishing together)."""
    path = os.path.join(out_dir, "ablation.json")
    existing = _load_json(path)
    count = sum(len(e["seeds"]) for e in result["cells"].values())
    if existing and sum(len(e["seeds"]) for e in existing["cells"].values()) > count:
        return {"json": path, "markdown": os.path.join(out_dir, "ablation.md"),
                "html": os.path.join(out_dir, "ablation.html")}
    images = ablation_images(result, base)
    for name, data in images.items():
        write_bytes_atomic(os.path.join(out_dir, name), data)
    blocks = ablation_blocks(result, images)
    write_text_atomic(os.path.join(out_dir, "ablation.md"), to_markdown(blocks))
    write_text_atomic(os.path.join(out_dir, "ablation.html"), to_html(blocks, "MAMSF ablation"))
    write_json_atomic(path, result)
    return {"json": path, "markdown": os.path.join(out_dir, "ablation.md"),
            "html": os.path.join(out_dir, "ablation.html")}
