"""`mamsf ablate`: the reviewer's experiments (anchor modes, anchored part, decay sweep) over seeds."""

import os

from keras_mamsf.cli.train import PROGRESS_CHOICES

# The named grids as --help lists them (kept light: the parser is built without Keras; a test checks
# that this names every grid of keras_mamsf.training.grid.GRIDS).
GRIDS_HELP = ("reviewer: modes + anchored part + decay sweep (8 cells); modes: none, branch, shadow, inplace; "
              "anchored_part: none, branch on the final block / the stage before it / the whole backbone; "
              "decay: none, branch at decay 0.99 / 0.999 / 0.9999; "
              "averaging: none, branch, no anchor with the whole model's weight average (weight_ema)")


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="train every cell x seed of an ablation grid (resumable, shardable) and report mean ± sd, the paired "
        "comparison with no anchor, minority-class drift and the protocol",
        description="Each cell-seed is a `mamsf train` run in OUT/runs/CELL/seedK with the same data, split, budget "
        "and seeds; finished runs are skipped, killed ones resume. Several workers (--shard I/N, a Slurm array, "
        "one process per GPU) may share OUT: run folders are claimed atomically. The report: OUT/ablation.md, "
        f".html, .json. Named grids: {GRIDS_HELP}.",
    )
    parser.add_argument("--data", metavar="ROOT", help="NIH-layout root (mamsf synth writes one)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the ablation folder (shared by all workers)")
    parser.add_argument("--config", metavar="FILE", default=None, help="the base training config (TOML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one base config key (repeatable); drift_monitor is on unless set false")
    parser.add_argument("--grid", default="reviewer", metavar="NAME|FILE",
                        help="a named grid (reviewer, modes, anchored_part, decay, averaging) or a TOML/YAML file "
                        "of cells")
    parser.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds per cell: seed, seed+1, ... (3)")
    parser.add_argument("--shard", default="1/1", metavar="I/N", help="run every N-th cell-seed from the I-th (1/1)")
    parser.add_argument("--shards", metavar="DIR", default=None,
                        help="read images from `mamsf prepare` shards (as mamsf train --shards)")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: build the report from the runs finished so far")
    parser.add_argument("--stale-after", type=float, default=900.0, metavar="SECONDS",
                        help="a claim from another host not refreshed for this long is taken over (900)")
    parser.add_argument("--on-bad-image", default="skip", choices=["skip", "error"],
                        help="as mamsf train's: skip and count a bad image (default), or stop")
    parser.add_argument("--verify", default="decode", choices=["decode", "header"],
                        help="check every image once before the first run by decoding it (default) or its header")
    parser.add_argument("--progress", default="none", choices=PROGRESS_CHOICES, help="Keras progress per run")
    parser.set_defaults(run=run)
    return parser


def base_and_cells(args):
    """The checked base config and cells (a bad key or value fails here, before any training)."""
    from keras_mamsf.cli.train import resolve_config
    from keras_mamsf.training.grid import check_cells, load_grid, named_grid

    base = resolve_config(args.config, args.overrides)
    mentioned = any(o.strip().startswith("drift_monitor") for o in args.overrides)
    if args.config and not mentioned:
        with open(args.config, encoding="utf-8") as handle:
            mentioned = "drift_monitor" in handle.read()
    if not mentioned:
        base = base.replace(drift_monitor=True)
    if os.path.isfile(args.grid) or args.grid.endswith((".toml", ".yaml", ".yml")):
        base, cells = load_grid(args.grid, base)
    else:
        cells = named_grid(args.grid, base)
    check_cells(cells, base)
    return base, cells


def run(args):
    from keras_mamsf.cli.errors import CommandError
    from keras_mamsf.training.ablation import finished_runs, read_plan, run_ablation
    from keras_mamsf.training.grid import parse_shard, plan, shard_of

    if args.report_only:
        base, cells, seeds, _ = read_plan(args.out)
        return report(args.out, base, cells, seeds)
    if not args.data:
        raise CommandError("--data ROOT is needed to train (or pass --report-only)")
    if not os.path.isdir(args.data):
        raise CommandError(f"{args.data}: no such folder; point --data at an NIH-layout root (or run mamsf synth)")
    if args.seeds < 1:
        raise CommandError(f"--seeds must be at least 1, got {args.seeds}")
    shard = parse_shard(args.shard)
    base, cells = base_and_cells(args)
    seeds = [base.seed + k for k in range(args.seeds)]
    runs = plan(cells, seeds)
    fewer = [f"{c.name} {c.seeds}" for c in cells if c.seeds and c.seeds < len(seeds)]
    print(f"mamsf ablate: {len(cells)} cells x {len(seeds)} seeds"
          + (f" (fewer for {', '.join(fewer)})" if fewer else "") + f" = {len(runs)} runs "
          f"({', '.join(c.name for c in cells)}); shard {shard[0]}/{shard[1]} takes "
          f"{len(shard_of(runs, shard))}; {base.epochs} epochs at {base.image_size} px each; folder {args.out}",
          flush=True)
    if not base.drift_monitor:
        print(f"note: the drift monitor is off ({args.config or 'a --set'} sets drift_monitor = false): the report "
              "will have no drift summary; add --set drift_monitor=true for one", flush=True)
    from keras_mamsf.data import nih

    index = nih.read_nih(args.data, on_bad_image=args.on_bad_image, verify=args.verify)
    if index.skipped:
        print(f"skipped {sum(index.skipped.values())} bad image(s): {', '.join(index.skipped_names[:5])}")
    from keras_mamsf.training.trainer import PROGRESS

    done = run_ablation(base, cells, seeds, args.data, args.out, shard=shard, shards=args.shards, index=index,
                        verbose=PROGRESS[args.progress], stale_after=args.stale_after,
                        log=lambda message: print(message, flush=True))
    print(f"this worker: trained {len(done['trained'])}, skipped {len(done['skipped'])} finished, "
          f"{len(done['held'])} held by other workers"
          + (f", FAILED {len(done['failed'])}: {', '.join(done['failed'])} (see OUT/events.jsonl; the same "
             "command resumes them)" if done["failed"] else ""))
    pending = len(runs) - sum(len(v) for v in finished_runs(args.out, cells, seeds).values())
    if pending:
        print(f"{pending} run(s) not finished yet (other shards or workers); when they are, `mamsf ablate --out "
              f"{args.out} --report-only` rebuilds the report")
    status = report(args.out, base, cells, seeds)
    return 1 if done["failed"] else status


def report(out_dir, base, cells, seeds):
    from keras_mamsf.training.ablation import report_ablation

    result, paths = report_ablation(out_dir, base, cells, seeds)
    if result is None:
        print(f"no finished runs in {out_dir} yet; nothing to report")
        return 0
    for line in summary_lines(result) + result["notes"]:
        print(line)
    print(f"report: {paths['html']} (and ablation.md, ablation.json)")
    return 0


def summary_lines(result):
    from keras_mamsf.evaluation.ablation import _ms
    from keras_mamsf.evaluation.plots import value_text

    lines = [f"  {'cell':<24} {'seeds':>5}  {'macro AUC':<16} {'delta vs none [95% CI]':<30} {'p':>7}"]
    for name, entry in result["cells"].items():
        vs = entry["vs_none"]
        delta = "baseline" if name == result["baseline"] else ("n/a" if vs is None else value_text(vs["delta_auc"],
                                                                                                     vs["ci"], 4))
        lines.append(f"  {name:<24} {len(entry['seeds']):>5}  {_ms(entry['macro_auc']):<16} {delta:<30} "
                     f"{'' if vs is None else format(vs['p_value'], '.3g'):>7}")
    return lines
