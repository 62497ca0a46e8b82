"""`run_ablation`: every cell-seed of a grid as a `mamsf train` run, resumable and shardable.

    OUT/plan.json                 the grid, the seeds and the base config (every worker checks it)
    OUT/runs/CELL/seedK/          one `train` run (config.toml, best.keras, metrics.json, drift.json, ...)
    OUT/events.jsonl              start / resume / finish / skip lines, one per event and worker
    OUT/ablation.{json,md,html}   the report (`keras_mamsf.evaluation.ablation`)

Every cell gets the same data, split, budget and seeds: a cell changes only its own keys of the
base config, and seed K sets `seed` (weights, data order, augmentation) while the split seed stays.
A run with `summary.json` is finished and skipped; one with a backup resumes where it stopped.
Workers started with `shard=(I, N)` take every N-th cell-seed; each run folder is claimed
atomically (`claims.try_claim`), so workers sharing the output folder never do a run twice, and a
killed worker's runs are taken over by the next worker started on them.
"""

import json
import os
import time

from keras_mamsf.training.claims import try_claim, worker_id
from keras_mamsf.training.config import ConfigError, TrainConfig
from keras_mamsf.training.grid import check_cells, plan, shard_of


def run_folder(out_dir, run_name):
    return os.path.join(out_dir, "runs", *run_name.split("/"))


def is_finished(run_dir):
    return os.path.isfile(os.path.join(run_dir, "summary.json"))


def plan_record(base, cells, seeds, data_root):
    """What `plan.json` holds: enough to rebuild the report without the workers."""
    record = {"base": base.to_dict(), "seeds": list(seeds), "data": os.path.abspath(data_root),
              "cells": {cell.name: {key: list(v) if isinstance(v, tuple) else v for key, v in cell.changes.items()}
                        for cell in cells}}
    counts = {cell.name: cell.seeds for cell in cells if cell.seeds}
    if counts:  # only when a cell runs fewer seeds: plans written before the key stay valid
        record["cell_seeds"] = counts
    return record


def write_plan(out_dir, record):
    """Writes `plan.json`, or checks that the one there is the same grid (another grid: an error)."""
    from keras_mamsf.utils import write_text_atomic

    path = os.path.join(out_dir, "plan.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            existing = json.load(handle)
        if set(existing.get("base", {})) <= set(TrainConfig.keys()):
            # A key added to TrainConfig after this plan was written stands at its default there.
            existing["base"] = TrainConfig().replace(**existing["base"]).to_dict()
        if existing != record:
            changed = sorted(key for key in record if existing.get(key) != record[key])
            raise ConfigError(f"{out_dir} holds an ablation with another {', '.join(changed)} (its plan.json); use "
                              "the same grid, config and --seeds to continue it, or another --out")
        return path
    os.makedirs(out_dir, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def log_event(out_dir, run_name, event, **fields):
    """One line in `events.jsonl` (O_APPEND: lines of concurrent workers do not interleave)."""
    line = json.dumps({"run": run_name, "event": event, "worker": worker_id(), "time": round(time.time(), 3),
                       **fields}) + "\n"
    descriptor = os.open(os.path.join(out_dir, "events.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line.encode("utf-8"))
    finally:
        os.close(descriptor)


def run_ablation(base, cells, seeds, data_root, out_dir, shard=(1, 1), shards=None, index=None, verbose=0,
                 log=print, stale_after=900.0):
    """Runs this worker's share of the grid; returns `{"trained", "skipped", "held", "failed"}` lists of run
    names (finished now, finished before, held by another live worker, stopped by an error). A failed run
    (a diverged loss, a full disk) does not stop the others; its folder keeps its backup, so the next
    worker started on it resumes it."""
    from keras_mamsf.training.trainer import train

    check_cells(cells, base)
    runs = plan(cells, seeds)
    write_plan(out_dir, plan_record(base, cells, seeds, data_root))
    done = {"trained": [], "skipped": [], "held": [], "failed": []}
    mine = shard_of(runs, shard)
    shard_text = f"{shard[0]}/{shard[1]}"
    for number, (cell, seed, name) in enumerate(mine, 1):
        run_dir = run_folder(out_dir, name)
        config = cell.config(base).replace(seed=seed)
        previous = os.path.join(run_dir, "config.toml")
        if os.path.isfile(previous) and TrainConfig.from_file(previous) != config:
            raise ConfigError(f"{run_dir} holds a run with other settings (its config.toml); use another --out")
        if is_finished(run_dir):
            done["skipped"].append(name)
            log(f"[{number}/{len(mine)}] {name}: finished before, skipped")
            continue
        claim = try_claim(run_dir, {"shard": shard_text}, stale_after=stale_after)
        if claim is None:
            done["held"].append(name)
            log(f"[{number}/{len(mine)}] {name}: another worker is on it, skipped")
            continue
        with claim:
            if is_finished(run_dir):  # finished between the check and the claim
                done["skipped"].append(name)
                continue
            resuming = os.path.isdir(os.path.join(run_dir, "backup"))
            log_event(out_dir, name, "resume" if resuming else "start", shard=shard_text)
            log(f"[{number}/{len(mine)}] {name}: {'resuming' if resuming else 'training'} "
                f"({', '.join(f'{k}={v}' for k, v in cell.changes.items())}, seed {seed})")
            try:
                summary = train(config, data_root, run_dir, shards=shards, verbose=verbose, index=index,
                                log=lambda message: None)
            except (RuntimeError, ValueError, OSError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                log_event(out_dir, name, "fail", shard=shard_text, reason=reason)
                done["failed"].append(name)
                log(f"[{number}/{len(mine)}] {name}: FAILED: {reason}")
                continue
            log_event(out_dir, name, "finish", shard=shard_text, macro_auc=summary["metrics"]["macro"]["auc"])
            done["trained"].append(name)
            log(f"[{number}/{len(mine)}] {name}: macro AUC {summary['metrics']['macro']['auc']:.4f}")
    return done


def finished_runs(out_dir, cells, seeds):
    """`{cell name: {seed: run folder}}` of the finished runs."""
    result = {}
    for cell, seed, name in plan(cells, seeds):
        run_dir = run_folder(out_dir, name)
        if is_finished(run_dir):
            result.setdefault(cell.name, {})[seed] = run_dir
    return result


def read_plan(out_dir):
    """`(base, cells, seeds, data_root)` from `plan.json` (for `--report-only`)."""
    from keras_mamsf.training.grid import Cell

    path = os.path.join(out_dir, "plan.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{out_dir}: no plan.json; run `mamsf ablate --data ROOT --out {out_dir}` first")
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    base = TrainConfig().replace(**record["base"])
    counts = record.get("cell_seeds", {})
    cells = [Cell(name, {key: tuple(v) if isinstance(v, list) else v for key, v in changes.items()},
                  seeds=counts.get(name, 0)) for name, changes in record["cells"].items()]
    return base, cells, record["seeds"], record["data"]


def report_ablation(out_dir, base, cells, seeds):
    """Builds and writes the report from the runs finished so far; `(result, paths)`, or `(None, None)`
    when no run has finished."""
    from keras_mamsf.evaluation.ablation import summarize_ablation, write_ablation

    runs = finished_runs(out_dir, cells, seeds)
    if not runs:
        return None, None
    result = summarize_ablation(base, cells, seeds, runs, out_dir, seed=base.seed)
    return result, write_ablation(out_dir, result, base)
