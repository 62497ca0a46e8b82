"""TFLite size and latency of every variant, against float32 and the Keras model, in one run, with a
per-op-type time table for the int8 and float32 files.

    python bench/tflite_latency.py [--model MODEL.keras | --backbone efficientnetb0,efficientnet_lite0] [--size 224]
        [--channels 1] [--calibration-data ROOT] [--rounds 15] [--runs 20] [--threads 1,2]
        [--exports DIR] [--keep DIR] [--no-profile] [--json] [--report FILE]

Without --model it builds MAMSF (random init, anchor "branch", its anchor moved off the online
weights as a trained model's is: equal blocks would be merged by the converter) on --backbone at
--size; several backbones (a comma list) are exported each and timed in the same interleaved rounds,
with each variant's ratio to the first backbone's same variant (the bedside backbone question);
--exports DIR reuses the .tflite files of an earlier export (`mamsf export` or --keep)
instead of exporting. The variants are exported with `keras_mamsf.export.export_model` (calibration:
the training split of --calibration-data, else of a small SYNTHETIC NIH-layout root written to a temporary folder;
the gate on that root's val split).

Latency, batch 1, one fixed image, in the LiteRT interpreter (`ai-edge-litert`, XNNPACK):
- *invoke*: `interpreter.invoke()` alone, the input already set;
- *end to end*: what `mamsf predict` pays per image: quantize the float image with the file's own
  parameters, run the "serve" signature, dequantize both outputs.
Machines drift (frequency, neighbours), so the variants are measured in interleaved rounds (each
round: every variant, --runs calls each after warm-up, in an order that alternates round by round),
and the int8/float32 ratio is the **median of the per-round ratios**, with its lowest and highest
round and a 95% bootstrap interval of that median over the rounds. The Keras baseline is the float32
inference model as a `tf.function`, batch 1, all cores.

Per-op profile: LiteRT's Python API has no op profiler, so each operator of the graph is cut out
into a one-operator model (its tensors, buffers and quantization unchanged; its non-constant
inputs fed with the values they take in the whole model on the same image) and timed alone at
the top thread count. The table sums them by op type; "sum / whole" says how much of the
whole-model invoke the isolated ops account for (below 1: XNNPACK runs fused partitions faster
than their ops alone; above 1: per-call overhead of tiny ops).

Targets (issue 15): int8 size <= 0.3x float32's; int8 invoke latency <= 0.45x float32's at 2
threads (median of per-round ratios); int8 vs Keras float macro AUC drop <= 0.005, every class
<= 0.02 on a trained model (the parity figures of an untrained one say little).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _median_s(call, runs, warmup=3):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(calls, rounds, runs):
    """{name: [median seconds of each round]}: every call measured once per round, the order
    reversed every other round so that a slow drift of the machine hits all of them alike."""
    names = list(calls)
    per_round = {name: [] for name in names}
    for index in range(rounds):
        for name in (names if index % 2 == 0 else names[::-1]):
            per_round[name].append(_median_s(calls[name], runs))
    return per_round


def _ratio_summary(numerator, denominator, resamples=2000, seed=0):
    """The median of the per-round ratios, its lowest and highest round, and a 95% bootstrap
    interval of the median over the rounds (is the figure *reliably* under a target?)."""
    import numpy as np

    ratios = np.asarray([a / b for a, b in zip(numerator, denominator)])
    picks = np.random.default_rng(seed).integers(0, len(ratios), (resamples, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    return {"median": float(np.median(ratios)), "low": float(ratios.min()), "high": float(ratios.max()),
            "ci95": [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]}


def _ready(path, threads, image, **options):
    """The .tflite at `path` in a LiteRT interpreter, tensors allocated, `image` (float, 0..255)
    set as its input with the file's own quantization."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_mamsf.inference.runners import quantize

    interpreter = Interpreter(model_path=path, num_threads=threads, **options)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], quantize(image, detail))
    return interpreter


class Bare:
    """One .tflite file in the LiteRT interpreter: `invoke` with its input set once, and the
    end-to-end path of `mamsf predict` (the library's runner) on the same float image."""

    def __init__(self, path, threads, image):
        from keras_mamsf.inference.runners import LiteRTRunner

        self.interpreter = _ready(path, threads, image)
        self.runner = LiteRTRunner(path, num_threads=threads)
        self.image = image

    def invoke(self):
        self.interpreter.invoke()

    def end_to_end(self):
        self.runner.predict(self.image)


def op_profile(path, image, threads, runs):
    """Per-operator seconds (median of `runs` invokes) of the .tflite at `path`, each operator cut
    out into a one-operator model fed with the values its inputs take in the whole model on
    `image`. Returns `(rows, whole_s)`; rows: (index, op type, seconds, output shape)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    from keras_mamsf.export import edgetpu

    whole = _ready(path, threads, image, experimental_preserve_all_tensors=True)  # every tensor's value
    whole.invoke()
    whole_s = _median_s(_ready(path, threads, image).invoke, runs)  # kept tensors change the memory plan

    model = flatbuffer_utils.read_model(path)
    names = [code["op"] for code in edgetpu.opcodes(model)]
    graph = model.subgraphs[0]
    operators, inputs, outputs = list(graph.operators), list(graph.inputs), list(graph.outputs)
    signatures = model.signatureDefs
    model.signatureDefs = []

    def constant(tensor_index):
        buffer = model.buffers[graph.tensors[tensor_index].buffer]
        return buffer.data is not None and len(buffer.data) > 0

    rows = []
    try:
        for index, operator in enumerate(operators):
            name = names[operator.opcodeIndex]
            feeds = [i for i in operator.inputs if i >= 0 and not constant(i)]
            graph.operators, graph.inputs, graph.outputs = [operator], feeds, list(operator.outputs)
            single = Interpreter(model_content=bytes(flatbuffer_utils.convert_object_to_bytearray(model)),
                                 num_threads=threads)
            single.allocate_tensors()
            for position, tensor_index in enumerate(feeds):
                value = whole.get_tensor(tensor_index)
                single.set_tensor(single.get_input_details()[position]["index"], np.asarray(value))
            seconds = _median_s(single.invoke, runs, warmup=2)
            shape = tuple(int(d) for d in graph.tensors[operator.outputs[0]].shape)
            rows.append((index, name, seconds, shape))
    finally:
        graph.operators, graph.inputs, graph.outputs = operators, inputs, outputs
        model.signatureDefs = signatures
    return rows, whole_s


def profile_table(profiles):
    """Rows (op type, {variant: (count, ms)}) sorted by the largest time, and the totals."""
    kinds = {}
    for variant, (rows, _) in profiles.items():
        for _, name, seconds, _ in rows:
            count, total = kinds.setdefault(name, {}).get(variant, (0, 0.0))
            kinds[name][variant] = (count + 1, total + 1000.0 * seconds)
    order = sorted(kinds, key=lambda name: -max(ms for _, ms in kinds[name].values()))
    return [(name, kinds[name]) for name in order]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained .keras file (default: MAMSF-B0, random init)")
    parser.add_argument("--backbone", default="efficientnetb0",
                        help="without --model: the backbone, or a comma list timed together (efficientnet_lite0: "
                        "ReLU6, no squeeze-excite)")
    parser.add_argument("--fusion-activation", default=None,
                        help="without --model: the fusion head's activation (default: swish; relu6 for lite0)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--calibration-data", help="NIH-layout root or prepared shards (default: synthetic)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--parity-images", type=int, default=100)
    parser.add_argument("--quantize", default="float32,float16,dynamic,int8")
    parser.add_argument("--exports", help="a folder with model_<variant>.tflite files to measure instead of exporting")
    parser.add_argument("--keep", help="export into this folder (kept) instead of a temporary one")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default: 15)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per variant per round (default: 20)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--report", help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    import numpy as np

    from keras_mamsf.export.exporter import tflite_name
    from keras_mamsf.export.litert import parse_variants

    say = (lambda *a: None) if args.json else print
    threads = [int(t) for t in args.threads.split(",")]
    variants = parse_variants(args.quantize)
    work = tempfile.mkdtemp(prefix="mamsf_tflite_bench_")
    report = {"rounds": args.rounds, "runs": args.runs, "threads": threads, "variants": {}}
    backbones = [b.strip() for b in args.backbone.split(",") if b.strip()]
    if (args.exports or args.model) and len(backbones) > 1:
        parser.error("several --backbone values build models; not with --exports or --model")
    exports = {}  # backbone -> (folder, manifest)
    if args.exports:
        from keras_mamsf.export.litert import MIXED
        from keras_mamsf.inference.formats import failed_name

        variants = [v for v in variants + [MIXED] if any(os.path.isfile(os.path.join(args.exports, name)) for name
                                                         in (tflite_name(v), failed_name(tflite_name(v))))]
        if not variants:
            parser.error(f"--exports {args.exports}: none of "
                         f"{', '.join(map(tflite_name, parse_variants(args.quantize)))} is there")
        manifest_path = os.path.join(args.exports, "manifest.json")
        manifest = None
        if os.path.isfile(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                manifest = json.load(handle)
        exports[backbones[0]] = (args.exports, manifest)
    else:
        for backbone in backbones:
            exports[backbone] = _export_one(backbone, args, variants, work, report, say, len(backbones) > 1)
    several = len(exports) > 1
    label = (lambda backbone, variant: f"{backbone}:{variant}") if several else (lambda backbone, variant: variant)
    from keras_mamsf.inference.formats import failed_name

    def found(folder, variant):  # a file that failed its gate is timed too, under its .FAILED name
        names = (tflite_name(variant), failed_name(tflite_name(variant)))
        return next((os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))), None)

    paths = {label(b, v): found(folder, v) for b, (folder, _) in exports.items() for v in variants
             if found(folder, v)}
    from keras_mamsf.inference.runners import LiteRTRunner

    shape = LiteRTRunner(next(iter(paths.values()))).input_shape
    report["input_shape"] = list(shape)
    image = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32")
    for backbone, (folder, manifest) in exports.items():
        for variant in variants:
            if label(backbone, variant) not in paths:
                continue
            entry = (manifest or {}).get("artifacts", {}).get(tflite_name(variant), {})
            row = {"bytes": os.path.getsize(paths[label(backbone, variant)]), "status": entry.get("status", "?")}
            parity = entry.get("parity") or {}
            if "paths" in parity:
                row["parity"] = {name: {k: figures.get(k) for k in ("max_dp", "macro_auc_change", "noninferiority")}
                                 for name, figures in parity["paths"].items()}
            report["variants"][label(backbone, variant)] = row
    for count in threads:
        say(f"timing {len(paths)} files at {count} thread(s): {args.rounds} interleaved rounds of {args.runs} "
            "calls each")
        bare = {name: Bare(path, count, image) for name, path in paths.items()}
        for kind in ("invoke", "end_to_end"):
            per_round = _interleaved({name: getattr(b, kind) for name, b in bare.items()}, args.rounds, args.runs)
            for name, seconds in per_round.items():
                report["variants"][name][f"{kind}_ms_{count}t"] = 1000.0 * statistics.median(seconds)
            for backbone in exports:  # each variant against its own backbone's float32
                for variant in variants:
                    quantized, reference = label(backbone, variant), label(backbone, "float32")
                    if variant != "float32" and quantized in per_round and reference in per_round:
                        key = f"{variant}_vs_float32" + (f" ({backbone})" if several else "")
                        report.setdefault(key, {})[f"{kind}_{count}t"] = _ratio_summary(per_round[quantized],
                                                                                      per_round[reference])
            first = next(iter(exports))
            for backbone in list(exports)[1:]:  # each backbone against the first, variant by variant
                for variant in variants:
                    if label(backbone, variant) in per_round and label(first, variant) in per_round:
                        report.setdefault(f"{backbone}_vs_{first} ({variant})", {})[f"{kind}_{count}t"] = (
                            _ratio_summary(per_round[label(backbone, variant)], per_round[label(first, variant)]))
    for backbone in exports:
        for variant in variants:
            quantized, reference = label(backbone, variant), label(backbone, "float32")
            if variant != "float32" and quantized in report["variants"] and reference in report["variants"]:
                key = f"{variant}_vs_float32" + (f" ({backbone})" if several else "")
                report.setdefault(key, {})["size"] = (report["variants"][quantized]["bytes"]
                                                      / report["variants"][reference]["bytes"])
    if not args.no_profile:
        top = max(threads)
        profiles = {}
        for variant in [v for v in ("float32", "int8") if v in paths]:
            say(f"profiling {tflite_name(variant)} op by op at {top} thread(s)")
            profiles[variant] = op_profile(paths[variant], image, top, max(5, args.runs // 2))
        report["profile"] = {
            variant: {"whole_ms": 1000.0 * whole_s, "sum_ms": 1000.0 * sum(r[2] for r in rows),
                      "ops": [{"index": i, "op": name, "ms": 1000.0 * s, "shape": list(shape_)}
                              for i, name, s, shape_ in rows]}
            for variant, (rows, whole_s) in profiles.items()}
        report["profile_by_type"] = {name: {v: {"count": c, "ms": ms} for v, (c, ms) in row.items()}
                                     for name, row in profile_table(profiles)}
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, args, threads)
    return 0


def _export_one(backbone, args, variants, work, report, say, several):
    """Exports `--model` or a random-init MAMSF on `backbone`; `(folder, manifest)`, the export time and the Keras
    model's latency in `report`."""
    import numpy as np

    import keras_mamsf as mamsf
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.export import export_model

    model_path = args.model
    if model_path is None:
        activation = args.fusion_activation or ("relu6" if "lite" in backbone else "swish")
        model = mamsf.build_model(backbone, input_shape=(args.size, args.size, args.channels),
                                  fusion_activation=activation)
        # At init the anchor equals the online block, and the converter then merges the two
        # identical blocks of "branch" into one: move the anchor off, as training does.
        rng = np.random.default_rng(0)
        for _, anchor in model.anchor_pairs():
            value = np.asarray(anchor.numpy())
            anchor.assign(value * (1 + 0.01 * rng.standard_normal(value.shape)).astype(value.dtype))
        model_path = mamsf.save_model(model, os.path.join(work, f"{backbone}.keras"))
    data = args.calibration_data
    if data is None:
        data = os.path.join(work, "synthetic")
        if not os.path.isdir(data):
            write_synthetic(data, images=max(4 * args.parity_images, 2 * args.calibration_images),
                            size=max(args.size, 64))
    out_dir = os.path.join(args.keep, backbone) if args.keep and several else args.keep or os.path.join(work, backbone)
    start = time.perf_counter()
    # no mixed int8 search: a random-init model's gate says nothing (time a mixed file with --exports)
    manifest = export_model(model_path, out_dir, formats=["tflite"], quantize=variants, calibration_data=data,
                            calibration_images=args.calibration_images, parity_images=args.parity_images, log=say,
                            mixed=False)
    suffix = f" ({backbone})" if several else ""
    report[f"export_s{suffix}"] = round(time.perf_counter() - start, 1)
    report[f"keras_ms{suffix}"] = _keras_ms(model_path, args.runs)
    return out_dir, manifest


def _keras_ms(model_path, runs):
    import numpy as np
    import tensorflow as tf

    import keras_mamsf as mamsf
    from keras_mamsf.inference import inference_model

    keras_model = inference_model(mamsf.load_model(model_path, compile=False))
    shape = keras_model.inputs[0].shape[1:]
    tensor = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32"))
    serve = tf.function(lambda x: keras_model(x, training=False))
    return 1000.0 * _median_s(lambda: serve(tensor)["probs"].numpy(), runs)


def _print(report, args, threads):
    source = args.exports or args.model or args.backbone
    print(f"\nMAMSF ({source}), {report['rounds']} interleaved rounds x {report['runs']} calls, batch 1")
    for key, value in report.items():
        if key.startswith("keras_ms"):
            print(f"Keras float32 (tf.function, all cores){key[len('keras_ms'):]}: {value:.2f} ms")
    width = max(10, *(len(name) + 2 for name in report["variants"]))
    header = f"{'file':<{width}}{'MB':>8}" + "".join(f"{f'invoke {t}t':>12}{f'e2e {t}t':>10}" for t in threads)
    print(header + f"{'status':>10}")
    for name, row in report["variants"].items():
        print(f"{name:<{width}}{row['bytes'] / 1e6:>8.2f}" + "".join(
            f"{row[f'invoke_ms_{t}t']:>12.2f}{row[f'end_to_end_ms_{t}t']:>10.2f}" for t in threads)
            + f"{row['status']:>10}")
    for comparison, ratios in report.items():
        if "_vs_" not in comparison:
            continue
        for key, value in ratios.items():
            if key == "size":
                print(f"{comparison} size: {value:.3f}")
            else:
                print(f"{comparison} {key.replace('_', ' ')}: median of per-round ratios {value['median']:.3f} "
                      f"(95% CI {value['ci95'][0]:.3f} .. {value['ci95'][1]:.3f}; rounds {value['low']:.3f} .. "
                      f"{value['high']:.3f})")
    if "profile" in report:
        variants = list(report["profile"])
        print(f"\nper-op-type time at {max(threads)} thread(s), each op alone (ms; count)")
        print(f"{'op':<28}" + "".join(f"{v:>22}" for v in variants))
        for name, row in report["profile_by_type"].items():
            cells = "".join(f"{row[v]['ms']:>14.3f} ({row[v]['count']:>4})" if v in row else f"{'-':>22}"
                            for v in variants)
            print(f"{name:<28}{cells}")
        print(f"{'sum of ops / whole invoke':<28}" + "".join(
            f"{p['sum_ms']:>9.2f} / {p['whole_ms']:>6.2f} ms{'':>2}" for p in report["profile"].values()))
        for variant in variants:
            ops = sorted(report["profile"][variant]["ops"], key=lambda op: -op["ms"])[:8]
            print(f"slowest ops in {variant}: " + "; ".join(
                f"#{op['index']} {op['op']} {op['ms']:.3f} ms {tuple(op['shape'])}" for op in ops))


if __name__ == "__main__":
    raise SystemExit(main())
