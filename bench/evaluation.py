"""Bootstrap CIs on a set shaped like ChestX-ray14's official test split, against sklearn in a loop.

    python bench/evaluation.py [--n-boot 2000] [--loop-resamples 40] [--json]

Simulates 25,596 images of 2,797 patients (follow-up counts drawn from a geometric law, so a few
patients have many images, as in NIH's test split) over the 14 classes with ChestX-ray14's
prevalences, and scores with binormal noise (a class AUC around 0.8). Times:
- ours: `evaluate_predictions` (per-class, macro and micro AUC and AP, 2000 patient resamples);
- the plain way: for each resample, `roc_auc_score` per class on the resampled arrays (AUC only,
  so the loop does less than ours); timed over `--loop-resamples` resamples and scaled to n_boot.
Prints both wall times and their ratio (target: >= 20x, ours under 30 s on 2 cores).
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

IMAGES, PATIENTS = 25596, 2797


def nih_shaped(seed=0):
    from keras_mamsf.evaluation import Predictions
    from keras_mamsf.labels import CHESTXRAY14_COUNTS, CHESTXRAY14_IMAGES, CHESTXRAY14_LABELS

    rng = np.random.default_rng(seed)
    # Each patient gets 1 image plus a geometric number more, rescaled to 25,596 in all.
    extra = rng.geometric(PATIENTS / IMAGES, size=PATIENTS) - 1
    extra = np.floor(extra * (IMAGES - PATIENTS) / extra.sum()).astype(int)
    extra[: IMAGES - PATIENTS - extra.sum()] += 1
    patient = np.repeat(np.arange(PATIENTS), 1 + extra)
    prevalence = np.asarray(CHESTXRAY14_COUNTS) / CHESTXRAY14_IMAGES
    patient_effect = rng.normal(size=(PATIENTS, 1))[patient]  # follow-ups are correlated
    y = (rng.random((IMAGES, 14)) < prevalence).astype("int8")
    score = 1.0 / (1.0 + np.exp(-(1.2 * y + 0.5 * patient_effect + rng.normal(size=(IMAGES, 14)))))
    return Predictions(y, score, labels=CHESTXRAY14_LABELS, patient_id=patient.astype(str),
                       source="simulated NIH test split")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--loop-resamples", type=int, default=40, help="resamples timed for the sklearn loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from sklearn.metrics import roc_auc_score

    from keras_mamsf.evaluation import evaluate_predictions
    from keras_mamsf.stats.bootstrap import clusters_of, resample_counts

    predictions = nih_shaped(args.seed)
    start = time.perf_counter()
    metrics = evaluate_predictions(predictions, n_boot=args.n_boot, seed=args.seed)
    ours = time.perf_counter() - start

    cluster, clusters, _ = clusters_of(predictions.patient_id, predictions.n_images)
    members = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[members], np.arange(clusters))
    sizes = np.bincount(cluster, minlength=clusters)
    start = time.perf_counter()
    done = 0
    for counts in resample_counts(clusters, args.loop_resamples, args.seed):
        for row in counts.astype(int):
            drawn = np.repeat(np.arange(clusters), row)
            index = np.concatenate([members[starts[k] : starts[k] + sizes[k]] for k in drawn])
            for c in range(predictions.y_true.shape[1]):
                roc_auc_score(predictions.y_true[index, c], predictions.y_score[index, c])
            done += 1
    loop = (time.perf_counter() - start) / done * args.n_boot
    report = {
        "images": predictions.n_images, "patients": predictions.n_patients, "classes": 14, "n_boot": args.n_boot,
        "ours_s": round(ours, 2), "sklearn_loop_s_scaled": round(loop, 1), "loop_resamples_timed": done,
        "speedup": round(loop / ours,
                         1), "macro_auc": metrics["macro"]["auc"], "macro_auc_ci": metrics["macro"]["auc_ci"],
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['images']} images, {report['patients']} patients, 14 classes, {args.n_boot} patient resamples")
        print(f"ours (AUC + AP, per class, macro, micro): {ours:.2f} s")
        print(f"sklearn roc_auc_score loop (AUC only): {loop:.1f} s (timed over {done} resamples, scaled)")
        print(f"speedup: {loop / ours:.1f}x; macro AUC {report['macro_auc']:.4f} {report['macro_auc_ci']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
