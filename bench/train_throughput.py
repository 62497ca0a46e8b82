"""Training throughput (images/s) of the anchored model against `anchor=None`, one run, any backend.

    python bench/train_throughput.py [--backend jax] [--policy auto] [--size 224] [--batch 256]
        [--modes none,branch,shadow,inplace] [--steps 20] [--rounds 5] [--peer timm] [--json]

What it measures: `model.fit` on synthetic tensors created on the device (a generator
that yields the same batch, so the input pipeline is not in the figure; on TensorFlow a
repeated `tf.data` tensor). Each mode is built, compiled and warmed up with one short
`fit`; then the modes are timed in interleaved rounds of one `fit(steps_per_epoch=--steps)`
each, the order rotating from round to round. A `fit` call ends by syncing the device, so
the wall time of the call covers the work. Reported per mode: the median images/s over
rounds, the median of the per-round ratio to `None`, the last loss (finite or not) and the
anchor's step counter against the optimizer's iterations.

`--policy auto` is `mixed_bfloat16` on a GPU and `float32` otherwise. `--peer timm` (PyTorch,
timm and a CUDA GPU needed) first measures timm's `efficientnet_b0` in a child process on
the same batch shape (AMP bfloat16, channels_last, AdamW, BCE-with-logits; compiled with
`torch.compile` and eager) and prints our/peer ratios for the `--peer-mode` model.
`--budget-s` stops the timed rounds early (after at least one), so a fixed device lease
still gets every figure.

Targets (issue 3, GPU): anchored/None >= 0.97 for "shadow"/"inplace", >= 0.90 for "branch";
MAMSF-B0 at 224 px, JAX, mixed_bfloat16 >= 1.1x timm efficientnet_b0 compiled.

Backends against each other (issue 23, CPU), one run:

    python bench/train_throughput.py --backends tensorflow,jax,torch --peer timm --size 128 --batch 32 \
        --steps 5 --rounds 5 [--peer-python /path/to/venv/bin/python] [--tf-variants]

Each backend (and the peer) is a worker process of its own (Keras picks its backend once per
process) holding the `--peer-mode` model, built, compiled and warmed up before any timing; then
the workers are timed in interleaved rounds (the order rotating), one at a time while the others
wait on a pipe, so all see the same machine. A round is one untimed step, then `--steps` timed
`train_on_batch` steps (each returns its loss, so each is finished when timed; right for a CPU,
pessimistic on a GPU, where the modes comparison above times `fit`). Not `fit` here: on this
2-core machine TensorFlow's `fit` of 3 steps after a pause took either 2.6 s or 5.1 s, round by
round, while its steps each took 0.82 s. Reported: images/s (median over
rounds) and the median per-round ratio to the first backend. `--tf-variants` adds TensorFlow
workers for the settings one might hope are faster on a CPU (XLA `jit_compile=True`,
`mixed_bfloat16`, one inter-op thread); `--peer-python` runs the peer under another interpreter
(timm needs torchvision, whose PyPI wheels need a CUDA build of torch).
On a CPU the peer is timm eager in float32, channels_last (`torch.compile` needs a C++ toolchain
and minutes of compiling; `--peer-compile` adds it).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

ALL_MODES = ("none", "branch", "shadow", "inplace")
NUM_CLASSES = 14


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                        choices=["jax", "tensorflow", "torch"])
    parser.add_argument("--policy", default="auto", help="auto | float32 | mixed_bfloat16 | mixed_float16")
    parser.add_argument("--backbone", default="efficientnetb0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--modes", default=",".join(ALL_MODES),
                        help="comma-separated anchor modes; 'none' (the baseline) is always measured")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--budget-s", type=float, default=None, help="stop the timed rounds after this many seconds")
    parser.add_argument("--peer", choices=["timm"], default=None)
    parser.add_argument("--peer-mode", default="branch", help="our model that the peer ratio is taken for")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report", default=None, help="also write the JSON report to this file (atomically)")
    parser.add_argument("--backends", default=None, metavar="B1,B2,...",
                        help="time these Keras backends against each other (worker processes, interleaved rounds) "
                        "with the --peer-mode model, instead of the modes of one backend")
    parser.add_argument("--tf-variants", action="store_true",
                        help="with --backends: also TensorFlow with XLA, with mixed_bfloat16, with 1 inter-op thread")
    parser.add_argument("--peer-python", default=sys.executable, metavar="PYTHON",
                        help="the interpreter of the timm peer (a venv with torch, torchvision and timm)")
    parser.add_argument("--peer-compile", action="store_true", help="on a CPU, also time timm under torch.compile")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m.strip().lower() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(ALL_MODES))
    if unknown:
        parser.error(f"unknown anchor mode(s) {unknown}: choose from {', '.join(ALL_MODES)}")
    args.modes = ["none"] + [m for m in modes if m != "none"]
    if args.peer and args.peer_mode not in args.modes:
        parser.error(f"--peer-mode {args.peer_mode} is not among --modes {args.modes}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.peer_worker:
        print("PEER " + json.dumps(measure_timm(args)), flush=True)
        return
    if args.worker:
        serve_worker(args)
        return
    if args.backends:
        report = compare_backends(args)
        if args.report:
            from keras_mamsf.utils import write_text_atomic

            write_text_atomic(args.report, json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2) if args.json else backends_table(report))
        return
    # The peer runs first, in its own process, so the two frameworks never hold the GPU together.
    peer = run_peer(args) if args.peer else None
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = measure_ours(args)
    if peer is not None:
        report["peer"] = peer
        ours = report["images_per_second"][args.peer_mode]
        report["ours_over_peer"] = {
            f"{args.peer_mode}/{name}": ours / value for name, value in peer["images_per_second"].items()
        }
    if args.report:
        from keras_mamsf.utils import write_text_atomic

        write_text_atomic(args.report, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


# -- ours ------------------------------------------------------------------------------
def measure_ours(args):
    import keras
    from keras import ops

    device, policy = device_and_policy(args.policy)
    x, y = synthetic_batch(args.batch, args.size)
    print(f"backend {keras.backend.backend()} on {device}, policy {policy}, {args.backbone} {args.size}px, "
          f"batch {args.batch}", flush=True)

    models, solo, warmup, warmup_losses = {}, {}, {}, {}
    for mode in args.modes:
        model = build_bench_model(args.backbone, args.size, mode, policy, args.learning_rate)
        started = time.perf_counter()
        warmup_loss = warmup_losses[mode] = _fit(model, x, y, args.warmup_steps)
        warmup[mode] = time.perf_counter() - started
        elapsed, loss = _timed_fit(model, x, y, args.steps)
        solo[mode] = args.batch * args.steps / elapsed
        print(f"  {mode:>8}: warm-up {warmup[mode]:6.1f} s (compile included, loss {warmup_loss:.4f}), "
              f"first timing {solo[mode]:8.1f} img/s (loss {loss:.4f})", flush=True)
        models[mode] = model

    seconds = {mode: [] for mode in args.modes}
    losses = {}
    started = time.perf_counter()
    for round_index in range(args.rounds):
        shift = round_index % len(args.modes)
        for mode in args.modes[shift:] + args.modes[:shift]:
            elapsed, losses[mode] = _timed_fit(models[mode], x, y, args.steps)
            seconds[mode].append(elapsed)
        print(f"  round {round_index + 1}: " + ", ".join(
            f"{m} {args.batch * args.steps / seconds[m][-1]:.1f} img/s loss {losses[m]:.4f}" for m in args.modes
        ), flush=True)
        if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
            print(f"  budget of {args.budget_s:.0f} s reached after {round_index + 1} round(s)", flush=True)
            break

    images = args.batch * args.steps
    report = {
        "backend": keras.backend.backend(), "device": device, "policy": policy, "backbone": args.backbone,
        "size": args.size, "batch": args.batch, "steps_per_round": args.steps, "rounds": len(seconds["none"]),
        "warmup_seconds": warmup,
        "first_timing_images_per_second": solo,
        "images_per_second": {m: images / statistics.median(s) for m, s in seconds.items()},
        "ratio_to_none": {
            m: statistics.median(b / a for a, b in zip(s, seconds["none"])) for m, s in seconds.items()
        },
        "warmup_loss": {m: (v if math.isfinite(v) else None) for m, v in warmup_losses.items()},
        "final_loss": {m: (v if math.isfinite(v) else None) for m, v in losses.items()},  # JSON has no NaN
        "loss_finite": {m: math.isfinite(v) for m, v in losses.items()},
        "anchor_steps": {
            m: [int(ops.convert_to_numpy(models[m].anchor_layers[0].step)),
                int(ops.convert_to_numpy(models[m].optimizer.iterations))]
            for m in args.modes if m != "none"
        },
    }
    return report


def synthetic_batch(batch, size):
    """The benchmark's one batch: pixels uniform in 0..255, labels positive with p = 0.2 (seed 0)."""
    import keras
    from keras import ops

    keras.utils.set_random_seed(0)
    x = keras.random.uniform((batch, size, size, 3), 0.0, 255.0, seed=1)
    y = ops.cast(keras.random.uniform((batch, NUM_CLASSES), seed=2) < 0.2, "float32")
    return x, y


def build_bench_model(backbone, size, mode, policy, learning_rate, jit_compile="auto"):
    """MAMSF with anchor `mode` ("none" = no anchor), same initial weights for every mode."""
    import keras

    import keras_mamsf as mamsf

    keras.utils.set_random_seed(0)
    model = mamsf.build_model(
        backbone, (size, size, 3), num_classes=NUM_CLASSES,
        anchor=None if mode == "none" else mode, dtype_policy=policy,
    )
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate), loss="binary_crossentropy",
                  jit_compile=jit_compile)
    return model


def _fit(model, x, y, steps):
    history = model.fit(_batches(model, x, y), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"][-1]


def _timed_fit(model, x, y, steps):
    started = time.perf_counter()
    loss = _fit(model, x, y, steps)
    return time.perf_counter() - started, float(loss)


def _batches(model, x, y):
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x, y)).repeat()

    def forever():  # the same device-resident batch: no host copy, no input pipeline
        while True:
            yield x, y

    return forever()


def device_and_policy(policy):
    """This process's first accelerator ("cpu" if none), and `policy` with "auto" resolved as `mamsf train` does."""
    from keras_mamsf.utils.environment import auto_dtype_policy, backend_accelerators

    accelerators = backend_accelerators()
    return (accelerators[0] if accelerators else "cpu"), (auto_dtype_policy() if policy == "auto" else policy)


# -- the peer: timm efficientnet_b0 ------------------------------------------------------
def run_peer(args):
    command = [sys.executable, os.path.abspath(__file__), "--peer-worker", "--size", str(args.size),
               "--batch", str(args.batch), "--steps", str(args.steps), "--rounds", str(args.rounds),
               "--learning-rate", str(args.learning_rate)]
    print("peer: timm efficientnet_b0 in a child process ...", flush=True)
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("PEER ")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"train_throughput: the timm peer failed: {tail[0]}")
    peer = json.loads(lines[-1][5:])
    for name, value in peer["images_per_second"].items():
        print(f"  timm efficientnet_b0 {name}: {value:8.1f} img/s (loss {peer['final_loss'][name]:.4f})", flush=True)
    return peer


def timm_stepper(args, compiled):
    """`(step, sync)`: one AdamW step of timm's efficientnet_b0 on one fixed batch (BCE-with-logits,
    channels_last; bfloat16 autocast on a CUDA GPU, float32 on a CPU), and the device sync."""
    import timm
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, NUM_CLASSES, device=device) < 0.2).float()
    model = timm.create_model("efficientnet_b0", num_classes=NUM_CLASSES).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    criterion = torch.nn.BCEWithLogitsLoss()
    forward = torch.compile(model) if compiled else model

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = criterion(forward(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step, (torch.cuda.synchronize if cuda else (lambda: None))


def measure_timm(args):
    try:
        import timm
        import torch
    except ImportError as error:
        raise SystemExit(f"--peer timm needs PyTorch and timm installed ({error})")
    if not torch.cuda.is_available():
        raise SystemExit("--peer timm with one backend's modes compares GPU figures: use a CUDA GPU, or --backends "
                         "for the CPU comparison")
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "timm": timm.__version__,
              "images_per_second": {}, "warmup_seconds": {}, "final_loss": {}}
    for name, compiled in (("compiled", True), ("eager", False)):
        step, sync = timm_stepper(args, compiled)
        started = time.perf_counter()
        for _ in range(max(args.warmup_steps, 3)):
            step()
        sync()
        report["warmup_seconds"][name] = time.perf_counter() - started
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.steps):
                loss = step()
            sync()
            rounds.append(time.perf_counter() - started)
        report["images_per_second"][name] = args.batch * args.steps / statistics.median(rounds)
        report["final_loss"][name] = float(loss)
        del step
        torch.cuda.empty_cache()
    return report


# -- backends against each other: one worker process each, timed in interleaved rounds ----
# A worker's kind: "keras:BACKEND[:VARIANT]" or "timm:eager" / "timm:compiled".
# --tf-variants: jit_compile=True (XLA), mixed_bfloat16, one inter-op thread (see keras_round)
TF_VARIANTS = ("xla", "bf16", "inter1")


def worker_kinds(args):
    """`{display name: worker kind}` in the order timed; the first is the reference of the ratios."""
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(names) - {"tensorflow", "jax", "torch"})
    if unknown or not names:
        raise SystemExit(f"--backends: unknown backend(s) {unknown}: choose from tensorflow, jax, torch")
    kinds = {name: f"keras:{name}" for name in names}
    if args.tf_variants:
        kinds.update({f"tensorflow+{variant}": f"keras:tensorflow:{variant}" for variant in TF_VARIANTS})
    if args.peer:
        kinds["timm eager"] = "timm:eager"
        if args.peer_compile:
            kinds["timm compiled"] = "timm:compiled"
    return kinds


def keras_round(args, variant):
    """`(run_round, info)` for a Keras worker (KERAS_BACKEND already set by the parent)."""
    import keras

    if variant == "inter1":
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)
    device, policy = device_and_policy("mixed_bfloat16" if variant == "bf16" else args.policy)
    x, y = synthetic_batch(args.batch, args.size)
    model = build_bench_model(args.backbone, args.size, args.peer_mode, policy, args.learning_rate,
                              jit_compile=True if variant == "xla" else "auto")
    started = time.perf_counter()
    for _ in range(args.warmup_steps + args.steps):
        model.train_on_batch(x, y)
    info = {"backend": keras.backend.backend(), "device": device, "policy": policy,
            "jit_compile": bool(model.jit_compile), "warmup_seconds": time.perf_counter() - started,
            "model": f"{args.backbone} anchor={args.peer_mode}"}

    def run_round():
        model.train_on_batch(x, y)  # untimed: the first step after the pause between rounds
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = model.train_on_batch(x, y)  # returns the loss as a number: the step is done
        return time.perf_counter() - started, float(loss)

    return run_round, info


def timm_round(args, compiled):
    import timm
    import torch

    step, sync = timm_stepper(args, compiled)
    started = time.perf_counter()
    for _ in range(max(args.warmup_steps, 3) + args.steps):
        step()
    sync()
    info = {"backend": f"torch {torch.__version__}, timm {timm.__version__}",
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "policy": "bfloat16 autocast" if torch.cuda.is_available() else "float32",
            "jit_compile": compiled, "warmup_seconds": time.perf_counter() - started,
            "model": "timm efficientnet_b0", "threads": torch.get_num_threads()}

    def run_round():
        step()  # untimed: the first step after the pause between rounds
        sync()
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        sync()
        return time.perf_counter() - started, float(loss)

    return run_round, info


def serve_worker(args):
    """The worker's side: build and warm up, say READY, then time one round per "go" line on stdin."""
    family, _, rest = args.worker.partition(":")
    if family == "timm":
        run_round, info = timm_round(args, compiled=rest == "compiled")
    else:
        run_round, info = keras_round(args, variant=rest.partition(":")[2])  # the backend is in KERAS_BACKEND
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        seconds, loss = run_round()
        print("ROUND " + json.dumps({"seconds": seconds, "loss": loss if math.isfinite(loss) else None}), flush=True)


def _answer(process, tag):
    """The payload of the worker's next line starting with `tag` (other output skipped); None at its end."""
    for line in process.stdout:
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    return None


def compare_backends(args):
    """Starts a worker per backend (and the peer), then times them in interleaved rounds."""
    import tempfile

    kinds = worker_kinds(args)
    common = ["--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
              "--warmup-steps", str(args.warmup_steps), "--learning-rate", str(args.learning_rate),
              "--policy", args.policy, "--backbone", args.backbone, "--peer-mode", args.peer_mode]
    logs = tempfile.mkdtemp(prefix="train_throughput_")
    workers, failed = {}, {}
    print(f"{len(kinds)} workers ({', '.join(kinds)}): {args.backbone} anchor={args.peer_mode} {args.size}px "
          f"batch {args.batch}; warming up one at a time (logs in {logs})", flush=True)
    for name, kind in kinds.items():  # one at a time: a warm-up never overlaps another's
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if kind.startswith("keras:"):
            env["KERAS_BACKEND"] = kind.split(":")[1]
        python = args.peer_python if kind.startswith("timm:") else sys.executable
        log_path = os.path.join(logs, name.replace(" ", "_") + ".log")
        with open(log_path, "w") as log:  # the child holds its own copy of the descriptor
            process = subprocess.Popen([python, os.path.abspath(__file__), "--worker", kind] + common, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        info = _answer(process, "READY")
        if info is None:
            process.wait()
            failed[name] = _last_line(log_path)
            print(f"  {name}: FAILED ({failed[name]})", flush=True)
            continue
        workers[name] = {"process": process, "info": info, "seconds": [], "losses": []}
        print(f"  {name}: ready after {info['warmup_seconds']:.1f} s ({info['device']}, {info['policy']}, "
              f"jit_compile {info['jit_compile']})", flush=True)
    names = list(workers)
    started = time.perf_counter()
    for round_index in range(args.rounds):
        shift = round_index % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            worker = workers[name]
            worker["process"].stdin.write("go\n")
            worker["process"].stdin.flush()
            answer = _answer(worker["process"], "ROUND")
            if answer is None:
                raise SystemExit(f"train_throughput: worker {name} died in round {round_index + 1}")
            worker["seconds"].append(answer["seconds"])
            worker["losses"].append(answer["loss"])
        print(f"  round {round_index + 1}: " + ", ".join(
            f"{n} {args.batch * args.steps / workers[n]['seconds'][-1]:.1f}" for n in names) + " img/s", flush=True)
        if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
            print(f"  budget of {args.budget_s:.0f} s reached after {round_index + 1} round(s)", flush=True)
            break
    for worker in workers.values():
        worker["process"].stdin.close()
        worker["process"].wait()
    reference = names[0] if names else None
    images = args.batch * args.steps
    return {
        "backbone": args.backbone, "mode": args.peer_mode, "size": args.size, "batch": args.batch,
        "steps_per_round": args.steps, "rounds": len(workers[reference]["seconds"]) if reference else 0,
        "reference": reference, "failed": failed,
        "workers": {
            name: {**worker["info"], "images_per_second": images / statistics.median(worker["seconds"]),
                   "ratio_to_reference": statistics.median(
                       r / s for r, s in zip(workers[reference]["seconds"], worker["seconds"])),
                   "round_seconds": worker["seconds"], "final_loss": worker["losses"][-1],
                   "loss_finite": worker["losses"][-1] is not None}
            for name, worker in workers.items()
        },
    }


def _last_line(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return lines[-1] if lines else "no output"


def backends_table(report):
    lines = [f"\n{report['backbone']} anchor={report['mode']} {report['size']}px batch {report['batch']}, "
             f"{report['rounds']} interleaved round(s) of {report['steps_per_round']} steps; ratios are the median "
             f"of per-round ratios to {report['reference']} (> 1: faster)"]
    for name, entry in report["workers"].items():
        loss = "NOT FINITE" if not entry["loss_finite"] else f"{entry['final_loss']:.4f}"
        lines.append(f"  {name:<18} {entry['images_per_second']:8.1f} img/s   ratio {entry['ratio_to_reference']:6.3f}"
                     f"   {entry['device']}, {entry['policy']}, jit_compile {entry['jit_compile']}, last loss {loss}")
    for name, reason in report["failed"].items():
        lines.append(f"  {name:<18} FAILED: {reason}")
    return "\n".join(lines)


def print_report(report):
    print(f"\n{report['backbone']} {report['size']}px batch {report['batch']}, {report['backend']} on "
          f"{report['device']}, {report['policy']}, {report['rounds']} round(s) of {report['steps_per_round']} steps")
    for mode, value in report["images_per_second"].items():
        loss = report["final_loss"][mode]
        steps = report["anchor_steps"].get(mode)
        counter = f"   anchor step {steps[0]} / optimizer iterations {steps[1]}" if steps else ""
        shown = f"{loss:.4f}" if report["loss_finite"][mode] else "NOT FINITE"
        print(f"{mode:>8}: {value:9.1f} img/s   ratio to none {report['ratio_to_none'][mode]:.3f}   "
              f"last loss {shown}{counter}")
    for name, ratio in report.get("ours_over_peer", {}).items():
        print(f"ours/peer ({name}): {ratio:.3f}")


if __name__ == "__main__":
    main()
