"""Where does a training run go non-finite? The same model, batch and seed under several settings.

    python bench/nonfinite_probe.py [--size 224] [--batch 256] [--mode none] [--steps 5]
        [--variants bf16,bf16-autotune0,float32] [--timeout-s 300] [--report FILE] [--json]

Written for issue 3's open finding: MAMSF-B0 at 224 px, batch 256, `mixed_bfloat16` on the JAX
backend went NaN within three steps on an H200 for the "none" model, while the "shadow" model,
which trains the identical network from identical initial weights, stayed finite; bfloat16 on
CPU stays finite. Each variant runs in its own process (XLA flags must be set before JAX starts;
GPU memory is freed in between) on `train_throughput`'s batch and initial weights, one
`train_on_batch` per step:

    bf16            mixed_bfloat16, the compiled train step (the configuration that failed)
    bf16-autotune0  the same with `--xla_gpu_autotune_level=0` (cuDNN's heuristic algorithms
                    instead of the autotuner's picks)
    float32         the compiled train step in float32

At a variant's first non-finite loss, the step is recomputed from its starting weights one
operation at a time (no jit): the forward pass with every layer's output checked as it is
produced (the first non-finite layer is named), then the gradients. The verdict says which of
these holds: the weights were already non-finite (the previous update made them); the model's
own arithmetic goes non-finite (forward: the layer; backward: the variables nearest the output
with non-finite gradients); or the op-by-op step is finite, so the compiled program made the
non-finite value (and whether autotune level 0 avoids it). No test depends on this script.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

from train_throughput import ALL_MODES, build_bench_model, device_and_policy, synthetic_batch

VARIANTS = ("bf16", "bf16-autotune0", "float32")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnetb0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--mode", default="none", choices=ALL_MODES)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--timeout-s", type=float, default=300.0, help="wall-clock limit of each variant's process")
    parser.add_argument("--report", default=None, help="also write the JSON report to this file (atomically)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-localise", action="store_true", help="do not recompute a failing step op by op")
    parser.add_argument("--variant-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.variant_worker:
        print("PROBE " + json.dumps(run_variant(args, args.variant_worker)), flush=True)
        return
    results = []
    for variant in args.variants:
        # Only the first variant that fails is recomputed op by op: that rerun is the slow part.
        localised = any(r.get("rerun_op_by_op") for r in results)
        results.append(spawn_variant(args, variant, localise_failure=not (args.no_localise or localised)))
    report = {"backbone": args.backbone, "size": args.size, "batch": args.batch, "mode": args.mode,
              "steps": args.steps, "variants": results, "verdict": verdict(results)}
    if args.report:
        os.environ.setdefault("KERAS_BACKEND", "jax")  # the package imports Keras; GPU machines may lack TensorFlow
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from keras_mamsf.utils import write_text_atomic

        write_text_atomic(args.report, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else f"verdict: {report['verdict']}")


def spawn_variant(args, variant, localise_failure=True):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    if variant == "bf16-autotune0":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_autotune_level=0").strip()
    command = [sys.executable, os.path.abspath(__file__), "--variant-worker", variant,
               "--backbone", args.backbone, "--size", str(args.size), "--batch", str(args.batch),
               "--mode", args.mode, "--steps", str(args.steps), "--learning-rate", str(args.learning_rate)]
    if not localise_failure:
        command.append("--no-localise")
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    except subprocess.TimeoutExpired as expired:
        result = {"variant": variant, "status": "timeout", "seconds": round(time.perf_counter() - started, 1),
                  "progress": _progress(expired.stdout)}
    else:
        lines = [line for line in completed.stdout.splitlines() if line.startswith("PROBE ")]
        if lines:
            result = json.loads(lines[-1][len("PROBE "):])
        else:
            tail = (completed.stderr or completed.stdout or "no output").strip().splitlines()[-1:]
            result = {"variant": variant, "status": "crashed", "error": tail[0] if tail else "no output",
                      "progress": _progress(completed.stdout)}
        result["seconds"] = round(time.perf_counter() - started, 1)
    print(_summary(result), flush=True)
    return result


def run_variant(args, variant):
    """One variant in this process: per-step losses until the first non-finite one, then where."""
    import numpy as np
    from keras import ops

    policy = "float32" if variant == "float32" else "mixed_bfloat16"
    x, y = synthetic_batch(args.batch, args.size)
    model = build_bench_model(args.backbone, args.size, args.mode, policy, args.learning_rate)
    result = {"variant": variant, "device": device_and_policy(policy)[0], "policy": policy,
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "losses": [], "first_nonfinite_step": None,
              "status": "finite"}
    for step in range(args.steps):
        # The step's starting state, kept only for the op-by-op rerun.
        before = None if args.no_localise else [np.array(ops.convert_to_numpy(v)) for v in model.variables]
        loss = float(model.train_on_batch(x, y))
        result["losses"].append(loss if math.isfinite(loss) else None)
        print(f"PROGRESS step {step} loss {loss:.5f}", flush=True)
        if not math.isfinite(loss):
            result.update(status="nonfinite", first_nonfinite_step=step)
            result["nonfinite_variables"] = _nonfinite_paths(model.variables)
            if not args.no_localise:
                for variable, value in zip(model.variables, before):
                    variable.assign(value)
                result["rerun_op_by_op"] = localise(model, x, y)
            break
    return result


def localise(model, x, y):
    """Recompute the failing step from its starting weights one operation at a time (not jitted).

    The forward pass runs eagerly with every layer's output checked as it is produced, so the
    first layer (in execution order) with a non-finite output is named; then the gradients of
    the same loss. Finite here while the compiled step was not means the compiled program, not
    the model's arithmetic, made the non-finite value.
    """
    import jax
    import keras
    from keras import ops

    report = {"weights_finite_before": not _nonfinite_paths(model.variables)["count"]}
    # Read before the forward pass below moves the BN statistics and dropout seeds, so the gradient
    # pass starts from exactly the compiled step's state.
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    first = []
    original_call = keras.layers.Layer.__call__

    def checked_call(layer, *call_args, **call_kwargs):
        outputs = original_call(layer, *call_args, **call_kwargs)
        if not first and not isinstance(layer, keras.Model) and not _all_finite(keras.tree.flatten(outputs)):
            first.append(f"{layer.name} ({type(layer).__name__})")
        return outputs

    keras.layers.Layer.__call__ = checked_call
    try:
        probs = model(x, training=True)
    finally:
        keras.layers.Layer.__call__ = original_call
    report["forward"] = {"finite": not first and _all_finite([probs]),
                         "first_nonfinite_layer": first[0] if first else None}
    if not report["forward"]["finite"]:
        return report  # the gradients of a non-finite loss say nothing more

    def loss_of(trainable_values):
        predictions, _ = model.stateless_call(trainable_values, non_trainable, x, training=True)
        return ops.mean(keras.losses.binary_crossentropy(y, predictions))

    loss, grads = jax.value_and_grad(loss_of)(trainable)  # not under jit: each operation runs on its own
    bad = [v.path for v, g in zip(model.trainable_variables, grads) if not _all_finite([g])]
    report["loss"] = float(loss) if math.isfinite(float(loss)) else None
    # The last variables in model order sit nearest the output, where a backward-pass NaN starts.
    report["gradients"] = {"nonfinite": len(bad), "of": len(grads), "nearest_output": bad[-6:][::-1]}
    return report


def _all_finite(values):
    import numpy as np
    from keras import ops

    for value in values:
        if hasattr(value, "dtype") and "float" in str(value.dtype):
            if not np.isfinite(np.asarray(ops.convert_to_numpy(ops.cast(value, "float32")))).all():
                return False
    return True


def _nonfinite_paths(variables):
    bad = [v.path for v in variables if not _all_finite([v.value])]
    return {"count": len(bad), "of": len(variables), "first": bad[:8]}


def verdict(results):
    status = {r["variant"]: r["status"] for r in results}
    if "nonfinite" not in status.values():
        return "did not reproduce: " + ", ".join(f"{v} {s}" for v, s in status.items())
    failed = next(r for r in results if r["status"] == "nonfinite")
    where = f"{failed['variant']} step {failed['first_nonfinite_step']}"
    rerun = failed.get("rerun_op_by_op")
    if rerun is None:
        return f"{where}: non-finite (not recomputed op by op)"
    if not rerun["weights_finite_before"]:
        return f"{where}: the weights were already non-finite before the step (the previous update made them)"
    if not rerun["forward"]["finite"]:
        return (f"{where}: the model's arithmetic: op by op, the forward pass goes non-finite at "
                f"{rerun['forward']['first_nonfinite_layer']}")
    if rerun["gradients"]["nonfinite"]:
        return (f"{where}: the model's arithmetic: op by op, the gradients go non-finite (nearest the output: "
                f"{rerun['gradients']['nearest_output'][:2]})")
    tuned = {"finite": "; autotune level 0 stays finite: the convolution algorithm XLA's autotuner picked",
             "nonfinite": "; autotune level 0 fails too: not the autotuner's pick"}
    tuned = tuned.get(status.get("bf16-autotune0"), "")
    return f"{where}: the compiled program: the same step op by op is finite (loss {rerun['loss']}){tuned}"


def _progress(stdout):
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    return [line[len("PROGRESS "):] for line in (stdout or "").splitlines() if line.startswith("PROGRESS ")]


def _summary(result):
    losses = result.get("losses") or []
    shown = ", ".join("nan" if v is None else f"{v:.4f}" for v in losses) or "-"
    line = f"{result['variant']:>15}: {result['status']:<9} {result.get('seconds', 0):6.1f} s  losses [{shown}]"
    if result.get("first_nonfinite_step") is not None:
        line += f"  first non-finite step {result['first_nonfinite_step']}"
    if result.get("rerun_op_by_op"):
        line += f"  op-by-op rerun: {json.dumps(result['rerun_op_by_op'])}"
    if result.get("progress"):
        line += f"  progress {result['progress']}"
    if result.get("error"):
        line += f"  error: {result['error']}"
    return line


if __name__ == "__main__":
    main()
