"""Produces the exports that `test_export.py` checks, in a child process started at collection.

    python tests/export_worker.py OUT_DIR

Training a small model and converting it to every format takes a few minutes of mostly
single-threaded work (graph tracing, the TFLite and ONNX converters), so it runs beside the
rest of the suite. This file only produces; the tests hold the assertions. It prints one line
`RESULT {json}` with the paths and the exit codes.

- `model.keras`: MAMSF on `test_efficientnet` (B0's final block on a short trunk: the same op kinds
  for the converters at a fraction of B0's tracing), 32 px grayscale, "branch", trained for 3
  batches on a synthetic root;
  `out/`: `mamsf export` of it to every format, TFLite float32 / dynamic / int8 (int8 calibrated
  on the root).
- `mixed.keras`: the same trained weights in a `mixed_bfloat16` build; `mixed_out/`: exported
  through `export_model` as float32 TFLite (must pass) and float16 TFLite under a gate
  that cannot hold (must be reported failed, with its figures). Between them, every TFLite
  variant is converted and run once.
- `b0_out/`: EfficientNetB0 "branch" (random init, anchor moved off the online weights) to float32
  TFLite and ONNX under the exact gate: the real backbone through the converters.
- `mode_{shadow,inplace,None}/`: the other anchor modes exported to SavedModel, float32 TFLite and
  ONNX (the toy model of conftest, with an anchor unlike the online weights).
- `eval_keras/`: `mamsf evaluate` of `model.keras` on the root's test split, thresholds from val;
  `eval_int8/`: of `out/model_int8.tflite` on the same split, with the Keras run's predictions as
  `--baseline` (its AUC change).
"""

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_mamsf as mamsf  # noqa: E402

SIZE = 32


def build(policy=None):
    return mamsf.build_model(backbone="test_efficientnet", input_shape=(SIZE, SIZE, 1), anchor="branch",
                             fusion_filters=8, dropout=0.0,
                             anchor_decay=0.5, anchor_warmup=False, dtype_policy=policy)


def move_anchor_off(model, factor):
    """anchor <- factor * anchor + 0.01: anchor weights unlike the online ones, as after training
    (equal ones would let "shadow" pass by reading the wrong path, and let the converter merge the
    two final blocks of "branch")."""
    for _, anchor in model.anchor_pairs():
        anchor.assign(anchor.value * factor + 0.01)


def produce(out_dir):
    from keras_mamsf.backbones.pretrained import weights_source
    from keras_mamsf.cli.main import main
    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.pipeline import make_dataset
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.export import export_model
    from keras_mamsf.inference.model_card import INITIAL_WEIGHTS_NAME
    from keras_mamsf.utils import write_json_atomic

    root = os.path.join(out_dir, "synth")
    write_synthetic(root, images=120, size=64, seed=3)
    index = nih.read_nih(root)
    train = splits.make_splits(index.records, index.lists, "official")["train"]
    keras.utils.set_random_seed(0)
    model = build()
    # Eagerly: three steps of a small model run faster than tracing the training graph.
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="binary_crossentropy", run_eagerly=True)
    model.fit(make_dataset(train, SIZE, 8, training=True, channels=1).take(3), epochs=1, verbose=0)
    model_path = mamsf.save_model(model, os.path.join(out_dir, "model.keras"))
    # as `mamsf train` writes it beside its models: the export carries it into the manifest
    write_json_atomic(os.path.join(out_dir, INITIAL_WEIGHTS_NAME), weights_source("test_efficientnet", None))
    out = os.path.join(out_dir, "out")
    code = main(["export", model_path, "--out", out, "--quantize", "float32,dynamic,int8", "--calibration-data", root,
                 "--calibration-images", "48", "--parity-images", "24", "--json",
                 # a few steps of training and a handful of val images cannot show non-inferiority at 0.02; this
                 # worker checks the formats (the gate's statistics: tests/test_parity.py, test_noninferiority.py)
                 "--margin", "1", "--min-positives", "1"])

    mixed = build("mixed_bfloat16")
    mixed.set_weights(model.get_weights())
    mixed_path = mamsf.save_model(mixed, os.path.join(out_dir, "mixed.keras"))
    from keras_mamsf.export.gates import GATES

    impossible = dict(GATES["quantized"], max_dp=-1.0, min_positives=10**6)  # nothing judged: never a pass
    report = export_model(mixed_path, os.path.join(out_dir, "mixed_out"), formats=["tflite"],
                          quantize=["float32", "float16"], parity_data=root, parity_images=16,
                          gates={"exact": {"max_dp": 1e-4}, "quantized": impossible})

    # The other three anchor modes (branch is `out/`, trained; mixed precision is `mixed_out/`): the
    # toy model (a conv-BN block in the same MomentumAnchor, 14 outputs; an EfficientNet export per
    # mode would cost minutes of the suite) with an anchor unlike the online weights, to SavedModel, float32
    # TFLite and ONNX under the exact gate.
    from conftest import toy_model

    modes = {}
    for mode in ("shadow", "inplace", None):
        keras.utils.set_random_seed(1)
        model = toy_model(mode, classes=14)
        move_anchor_off(model, 0.8)
        path = mamsf.save_model(model, os.path.join(out_dir, f"mode_{mode}.keras"))
        mode_out = os.path.join(out_dir, f"mode_{mode}")
        mode_report = export_model(path, mode_out, formats=["savedmodel", "tflite", "onnx"], quantize=["float32"],
                                   parity_data=root, parity_images=8, gates={"exact": {"max_dp": 1e-4}})
        modes[str(mode)] = {"model": path, "out": mode_out, "ok": mode_report["ok"]}

    # EfficientNetB0 itself, "branch" with its anchor moved off: the real backbone through the float32
    # TFLite and ONNX converters.
    keras.utils.set_random_seed(2)
    b0 = mamsf.build_model(input_shape=(SIZE, SIZE, 1), anchor="branch", fusion_filters=8, dropout=0.0)
    move_anchor_off(b0, 0.9)
    b0_path = mamsf.save_model(b0, os.path.join(out_dir, "b0.keras"))
    b0_report = export_model(b0_path, os.path.join(out_dir, "b0_out"), formats=["tflite", "onnx"],
                             quantize=["float32"], parity_data=root, parity_images=8,
                             gates={"exact": {"max_dp": 1e-4}})
    b0_result = {"model": b0_path, "out": os.path.join(out_dir, "b0_out"), "ok": b0_report["ok"]}

    evaluations = {}
    for name, model_file, extra in (("eval_keras", model_path, ["--thresholds-from", "val"]),
                                    ("eval_int8", os.path.join(out, "model_int8.tflite"),
                                     ["--baseline", os.path.join(out_dir, "eval_keras", "predictions.npz")])):
        evaluations[name] = main(["evaluate", "--model", model_file, "--data", root, "--val-fraction", "0.3",
                                  "--n-boot", "200", "--out", os.path.join(out_dir, name), *extra])
    return {"root": root, "model": model_path, "out": out, "code": code, "mixed": mixed_path,
            "mixed_out": os.path.join(out_dir, "mixed_out"), "mixed_ok": report["ok"],
            "mixed_failed": report["failed"], "evaluations": evaluations, "modes": modes, "b0": b0_result,
            **{name: os.path.join(out_dir, name) for name in evaluations}}


if __name__ == "__main__":
    try:
        result = produce(sys.argv[1])
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    print("RESULT " + json.dumps(result), flush=True)
