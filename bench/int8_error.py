"""Where a trained run's int8 error comes from: the int8 file's logits against the float model's, with one part of
the network in int8 at a time.

    python bench/int8_error.py --run runs/pre --data ROOT [--rounding gptq] [--films 300] [--json FILE]

--run: a `mamsf train` run folder (best.keras, config.toml and the OOD guard it wrote, ood_guard.npz). --data: its
NIH-layout root. The graph is the one `mamsf export` converts (the guard's score included, the grayscale stem
folded), its kernels rounded onto the int8 grid as the export rounds them (`--rounding`), calibrated as the export
calibrates (--films training films of the run's split plus the guard's five images). Scored on the run's whole
validation split.

The error of a file is the RMS change of each class's logit over the SD of the float model's logit on the
validation films, averaged over the classes: 0.1 moves a logit by a tenth of the spread that ranks the films.
Printed for "all" (the full int8 file), "weights only" (every op in float but the guard's, with the rounded
kernels: the floor the weights set) and each part alone in int8: the stem, each stage (`blockN`), the final block
with its anchor copy and the fusion head ("head"). "added" is what the part adds over the weights alone, in
quadrature (sqrt(error^2 - floor^2)): independent errors add that way, so the parts' squares roughly sum to the
whole's.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

import numpy as np


def part_of(name, guard_output="StatefulPartitionedCall:1"):
    """The part of the network a TFLite op belongs to, from the Keras layer names in its name: the OOD guard's ops
    None (int8 in every file: the guard is not what is measured), the final block, its anchor and the head "head".

    The ops that write the graph's outputs are named after the serving signature's output tensors instead
    (`StatefulPartitionedCall:K`, K in the order of the sorted output keys: logits, ood_score, probs), the int8 op
    before the float output with a "1" appended (`StatefulPartitionedCall:11`); `guard_output` is the guard's."""
    if "ood_score" in name or name in (guard_output, guard_output + "1"):
        return None
    if "stem" in name:
        return "stem"
    stage = re.search(r"block(\d)", name)
    if stage and "final_block" not in name and "momentum_anchor" not in name:
        return f"stage {stage.group(1)}"
    return "head"


def logit_error(path, images, reference):
    from keras_mamsf.inference.formats import load_runner

    logits = load_runner(path).predict(images)["logits"]
    return float(np.mean(np.sqrt(((logits - reference) ** 2).mean(0)) / reference.std(0)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounding", default="gptq", choices=("gptq", "nearest"))
    parser.add_argument("--films", type=int, default=300)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_mamsf.data.sources import dataset_arrays, open_root
    from keras_mamsf.export import litert, weight_rounding
    from keras_mamsf.export.calibration import int8_calibration
    from keras_mamsf.export.folding import fold_grayscale_stem
    from keras_mamsf.export.serving import serving_archive
    from keras_mamsf.guard import guard_beside
    from keras_mamsf.inference.graph import inference_model, input_shape
    from keras_mamsf.inference.model_card import run_split
    from keras_mamsf.models.io import load_model

    started = time.time()
    model_path = os.path.join(args.run, "best.keras")
    guard = guard_beside(model_path)
    if guard is None:
        sys.exit(f"{args.run}: no ood_guard.npz beside best.keras; run `mamsf train` to the end, or export once")
    graph, _ = fold_grayscale_stem(inference_model(load_model(model_path, compile=False), guard))
    guard_output = f"StatefulPartitionedCall:{sorted(graph.output).index('ood_score')}"
    size, _, channels = input_shape(graph)
    source = open_root(args.data, split=run_split(model_path))
    calibration = int8_calibration(args.data, size, channels, args.films, 0, source=source)
    films = calibration["images"][:calibration["films"]]
    val, _ = dataset_arrays(source.dataset("val", size, 64, channels=channels))
    reference = np.asarray(graph.predict(val, batch_size=64, verbose=0)["logits"], dtype="float64")
    print(f"calibration: {calibration['source']}; scored on {len(val)} val films", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_error_") as work:
        saved = os.path.join(work, "batch1")
        if args.rounding == "gptq":
            with weight_rounding.rounded_for_int8(graph, films) as record:
                serving_archive(graph, batch_size=1).write_out(saved, verbose=False)
            print(f"weights: {record['kernels']} kernels rounded with GPTQ in {record['seconds']:.0f} s", flush=True)
        else:
            serving_archive(graph, batch_size=1).write_out(saved, verbose=False)
        candidate = os.path.join(work, "candidate.tflite")
        for name, ops, data in litert.int8_by_part(saved, calibration["images"][:, None],
                                                   lambda op: part_of(op, guard_output)):
            with open(candidate, "wb") as handle:
                handle.write(data)
            rows.append({"part": name, "int8_ops": ops, "logit_error": logit_error(candidate, val, reference)})
            print(f"  {name:14s} {ops:4d} ops in int8   logit error {rows[-1]['logit_error']:.4f}", flush=True)
    floor = next(row["logit_error"] for row in rows if row["part"] == "weights only")
    print(f"\n| part | ops in int8 | logit error | added over the weights ({floor:.4f}) |\n|---|---|---|---|")
    for row in rows:
        row["added"] = float(np.sqrt(max(row["logit_error"] ** 2 - floor ** 2, 0.0)))
        added = "" if row["part"] == "weights only" else f"{row['added']:.4f}"
        print(f"| {row['part']} | {row['int8_ops']} | {row['logit_error']:.4f} | {added} |")
    print(f"({time.time() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"run": args.run, "rounding": args.rounding, "films": len(films), "val_films": len(val),
                       "parts": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
