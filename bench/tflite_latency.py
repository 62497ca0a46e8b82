"""TFLite size and latency of every variant, against the Keras model, in one run.

    python bench/tflite_latency.py [--model MODEL.keras | --backbone efficientnet_lite0] [--size 224] [--channels 1]
        [--calibration-data ROOT] [--runs 50] [--threads 1,2] [--json] [--report FILE]

Without --model it builds MAMSF (random init, anchor "branch") on --backbone at --size. The variants are
exported with `keras_mamsf.export.export_model` (calibration: the training split of
--calibration-data, else of a small SYNTHETIC NIH-layout root written to a temporary folder;
parity on that root's test split). Each `.tflite` runs in the LiteRT interpreter (`ai-edge-litert`)
with 1 and 2 threads on one fixed image, batch 1: median of --runs invocations after 5 warm-ups.
The Keras baseline is the float32 inference model called on the same image (batch 1, a
`tf.function`, all cores). Targets (issue 5): int8 size <= 0.3x float32's, int8 latency <= 0.5x
float32's at 2 threads; int8 vs Keras float macro AUC drop <= 0.005, every class <= 0.02 (read
the parity figures with care on an untrained model: its probabilities barely differ).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _median_ms(call, runs):
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained .keras file (default: MAMSF-B0, random init)")
    parser.add_argument("--backbone", default="efficientnetb0",
                        help="without --model: the backbone (efficientnet_lite0: ReLU6, no squeeze-excite)")
    parser.add_argument("--fusion-activation", default=None,
                        help="without --model: the fusion head's activation (default: swish; relu6 for lite0)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--calibration-data", help="NIH-layout root or prepared shards (default: synthetic)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--parity-images", type=int, default=100)
    parser.add_argument("--quantize", default="float32,float16,dynamic,int8")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--report", help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    import keras_mamsf as mamsf
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.export import export_model, inference_model, load_runner
    from keras_mamsf.export.exporter import tflite_name
    from keras_mamsf.export.litert import parse_variants

    threads = [int(t) for t in args.threads.split(",")]
    variants = parse_variants(args.quantize)
    work = tempfile.mkdtemp(prefix="mamsf_tflite_bench_")
    model_path = args.model
    if model_path is None:
        activation = args.fusion_activation or ("relu6" if "lite" in args.backbone else "swish")
        model = mamsf.build_model(args.backbone, input_shape=(args.size, args.size, args.channels),
                                  fusion_activation=activation)
        model_path = mamsf.save_model(model, os.path.join(work, "model.keras"))
    data = args.calibration_data
    if data is None:
        data = os.path.join(work, "synthetic")
        write_synthetic(data, images=max(4 * args.parity_images, 2 * args.calibration_images), size=max(args.size, 64))
    start = time.perf_counter()
    manifest = export_model(model_path, os.path.join(work, "out"), formats=["tflite"], quantize=variants,
                            calibration_data=data, calibration_images=args.calibration_images,
                            parity_images=args.parity_images,
                            log=None if args.json else print)
    export_s = time.perf_counter() - start

    keras_model = inference_model(mamsf.load_model(model_path, compile=False))
    height, width, channels = keras_model.inputs[0].shape[1:]
    image = np.random.default_rng(0).uniform(0, 255, (1, height, width, channels)).astype("float32")
    serve = tf.function(lambda x: keras_model(x, training=False))
    tensor = tf.constant(image)
    report = {"size": args.size, "channels": channels, "runs": args.runs, "export_s": round(export_s, 1),
              "keras_ms": _median_ms(lambda: serve(tensor)["probs"].numpy(), args.runs), "variants": {}}
    for variant in variants:
        path = os.path.join(work, "out", tflite_name(variant))
        entry = manifest["artifacts"][tflite_name(variant)]
        row = {"bytes": os.path.getsize(path), "status": entry["status"]}
        for count in threads:
            runner = load_runner(path, num_threads=count)
            row[f"ms_{count}t"] = _median_ms(lambda: runner.predict(image), args.runs)
        parity = entry["parity"]
        if "paths" in parity:
            row["parity"] = {name: {k: figures[k] for k in ("max_dp", "macro_auc_drop", "max_class_auc_drop")}
                             for name, figures in parity["paths"].items()}
        report["variants"][variant] = row
    if "float32" in report["variants"] and "int8" in report["variants"]:
        f32, i8 = report["variants"]["float32"], report["variants"]["int8"]
        top = max(threads)
        report["int8_vs_float32"] = {"size": i8["bytes"] / f32["bytes"],
                                     f"latency_{top}t": i8[f"ms_{top}t"] / f32[f"ms_{top}t"]}
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\nMAMSF ({args.model or args.backbone}) at {args.size} px, {channels} channel(s); export took {export_s:.0f} s")
    print(f"{'variant':<10}{'MB':>8}" + "".join(f"{f'ms {t} thr':>12}" for t in threads) + f"{'status':>10}")
    print(f"{'keras':<10}{'':>8}{report['keras_ms']:>12.2f}  (tf.function, batch 1, all cores)")
    for variant, row in report["variants"].items():
        print(f"{variant:<10}{row['bytes'] / 1e6:>8.2f}" + "".join(f"{row[f'ms_{t}t']:>12.2f}" for t in threads)
              + f"{row['status']:>10}")
    if "int8_vs_float32" in report:
        print("int8 / float32: " + ", ".join(f"{k} {v:.3f}" for k, v in report["int8_vs_float32"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
