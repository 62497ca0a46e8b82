"""The out-of-distribution guard of a trained run, measured on real images and on what it must flag.

    python bench/ood_guard.py --run runs/cxr14 --data ROOT [--export runs/cxr14/export] [--json FILE]

--run: a `mamsf train` run folder (best.keras, config.toml, ood_guard.npz). --data: its NIH-layout root. The
test split is the run's own (its config's split settings). --export: a `mamsf export` folder of best.keras
with `model_int8.tflite`: its `ood_score` is compared with the float model's on the test split (Spearman,
verdict agreement) and run on every out-of-distribution set too.

Printed per set (flagged share; AUROC of the score against the untouched test images):
- the test split (the in-distribution false-alarm rate; alpha on the validation split);
- the test split under each benign variation (`keras_mamsf.guard.variations.BENIGN_VARIATIONS`: JPEG 75 and 30,
  gamma, brightness +-10%, contrast, a 2% crop, noise, another resolution): false alarms that should stay low;
- the foreign images that ship with packages (`keras_mamsf.guard.foreign_images`: photographs, microscopy,
  fundus, documents and graphics, CT/MR/NM/US slices), per kind, every miss named;
- every single-frame grey CT / MR slice among pydicom's test files (read with --force, as `mamsf predict`
  would read them past the Modality check);
- blank and constant images (0, 64, 128, 200, 255), uniform noise (20 images);
- the test images inverted, turned upside down and rotated 90 degrees.
"""

import argparse
import json
import os
import sys

import numpy as np


def pydicom_slices(size, channels):
    """`{file name: image}` of pydicom's single-frame grey CT and MR test files, as `mamsf predict --force`
    reads them; files that do not decode are counted and named on stderr."""
    import pydicom
    import pydicom.data

    from keras_mamsf.data.images import load_image

    found, failed = {}, []
    for path in sorted(pydicom.data.get_testdata_files("*")):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            frames = int(header.get("NumberOfFrames", 1) or 1)
        except Exception:  # noqa: BLE001 - not every test file is a well-formed DICOM dataset
            continue
        grey = str(header.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
        if str(header.get("Modality", "")) in ("CT", "MR") and frames == 1 and grey:
            try:
                found[os.path.basename(path)] = load_image(path, size, channels, force=True)
            except Exception as error:  # noqa: BLE001 - a corrupt test file (pydicom ships some on purpose)
                failed.append(f"{os.path.basename(path)} ({str(error).splitlines()[0][:80]})")
    if failed:
        print(f"pydicom files that do not decode, left out: {len(failed)}: {'; '.join(failed)}", file=sys.stderr)
    return found


def main(argv=None):
    import warnings

    warnings.filterwarnings("ignore", module="pydicom")  # its test files are odd on purpose
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--export", default=None)
    parser.add_argument("--json", default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.sources import image_source
    from keras_mamsf.guard import OODGuard
    from keras_mamsf.inference.formats import load_runner
    from keras_mamsf.training.config import TrainConfig

    config = TrainConfig.from_file(os.path.join(args.run, "config.toml"))
    guard = OODGuard.load(os.path.join(args.run, "ood_guard.npz"))
    index = nih.read_nih(args.data, on_bad_image="skip")
    parts = splits.make_splits(index.records, index.lists, config.split, config.val_fraction, config.split_seed,
                               config.view)
    size, channels = config.image_size, config.channels
    test = np.concatenate([x for x, _ in image_source(parts).dataset("test", size, 64, channels=channels)
                          .as_numpy_iterator()])
    from keras_mamsf.guard.foreign_images import foreign_images, kind_group
    from keras_mamsf.guard.variations import BENIGN_VARIATIONS, benign_variation

    foreign_names, foreign_kinds, foreign, skipped = foreign_images(size, channels)
    if skipped:
        print(f"foreign files that do not decode here, left out: {len(skipped)}: {'; '.join(skipped)}",
              file=sys.stderr)
    groups = [kind_group(kind) for kind in foreign_kinds]
    rng = np.random.default_rng(0)
    sets = {f"test, {name}": benign_variation(test, name, seed=1) for name in BENIGN_VARIATIONS}
    sets["foreign: all kinds"] = foreign
    sets.update({f"foreign: {group}": foreign[[g == group for g in groups]] for group in dict.fromkeys(groups)})
    sets.update({
        "pydicom CT/MR slices": np.stack(list(pydicom_slices(size, channels).values())),
        "blank and constant": np.stack([np.full((size, size, channels), value, "float32")
                                        for value in (0, 64, 128, 200, 255)]),
        "uniform noise": rng.uniform(0, 255, (20, size, size, channels)).astype("float32"),
        "inverted": 255.0 - test,
        "upside down": test[:, ::-1],
        "rotated 90 degrees": np.rot90(test, axes=(1, 2)),
    })
    runners = {"float (Keras)": load_runner(os.path.join(args.run, "best.keras"))}
    if args.export:
        runners["int8 TFLite"] = load_runner(os.path.join(args.export, "model_int8.tflite"))
    figures = {"threshold": guard.threshold, "alpha": guard.alpha, "fit": guard.source, "test_images": len(test),
               "features": guard.features, "ordinary_variations": guard.variations,
               "foreign": [{"name": n, "kind": k} for n, k in zip(foreign_names, foreign_kinds)]}
    scores = {}
    for name, runner in runners.items():
        scores[name] = {"test": runner.predict(test)["ood_score"].astype("float64")}
        rows = {"test split": {"flagged": float(np.mean(scores[name]["test"] > guard.threshold))}}
        for set_name, images in sets.items():
            values = runner.predict(images)["ood_score"].astype("float64")
            scores[name][set_name] = values
            truth = np.r_[np.zeros(len(test)), np.ones(len(values))]
            rows[set_name] = {"images": len(values), "flagged": float(np.mean(values > guard.threshold)),
                              "auroc": float(roc_auc_score(truth, np.r_[scores[name]["test"], values]))}
        figures[name] = rows
        print(f"\n{name}: threshold {guard.threshold:.2f} (alpha {guard.alpha:g} on the val split)")
        print(f"  {'set':<36} {'images':>6} {'flagged':>8} {'AUROC':>7}")
        print(f"  {'test split':<36} {len(test):>6} {rows['test split']['flagged']:>8.3f} {'':>7}")
        for set_name in sets:
            row = rows[set_name]
            print(f"  {set_name:<36} {row['images']:>6} {row['flagged']:>8.3f} {row['auroc']:>7.4f}")
        missed = [f"{n} ({k}, {score:.2f})" for n, k, score in zip(foreign_names, foreign_kinds,
                                                                   scores[name]["foreign: all kinds"])
                  if score <= guard.threshold]
        rows["foreign missed"] = missed
        print(f"  foreign images missed: {len(missed)} of {len(foreign)}"
              + (f": {'; '.join(missed)}" if missed else ""))
    if args.export:
        float_test, int8_test = scores["float (Keras)"]["test"], scores["int8 TFLite"]["test"]
        agreement = float(np.mean((float_test > guard.threshold) == (int8_test > guard.threshold)))
        figures["int8_vs_float_on_test"] = {"spearman": float(spearmanr(float_test, int8_test).statistic),
                                           "verdict_agreement": agreement}
        print(f"\nint8 vs float ood_score on the test split: Spearman "
              f"{figures['int8_vs_float_on_test']['spearman']:.4f}, verdicts agree on {agreement:.4f}")
        pooled = [np.concatenate([scores[runner][key] for key in scores["float (Keras)"]]) for runner in
                  ("float (Keras)", "int8 TFLite")]
        figures["int8_vs_float_on_every_set"] = {"images": int(len(pooled[0])),
                                                "spearman": float(spearmanr(*pooled).statistic)}
        print(f"int8 vs float ood_score over every set above ({len(pooled[0])} images): Spearman "
              f"{figures['int8_vs_float_on_every_set']['spearman']:.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
