"""`mamsf demo`: train a small MAMSF model on synthetic data, evaluate, save, reload."""

import json
import os

from keras_mamsf.training.distribution import DISTRIBUTE_CHOICES


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="train a small MAMSF model on synthetic data and report per-class AUC",
        description="Writes a SYNTHETIC dataset in the NIH ChestX-ray14 layout (mamsf synth) under OUT/data, or "
        "reads --data ROOT; trains MAMSF (EfficientNetB0, random init) on the train split through the tf.data "
        "pipeline, reports per-class AUC on the patient-disjoint test split, saves the model atomically as "
        "OUT/model.keras and checks that it reloads (safe_mode) with identical predictions.",
    )
    parser.add_argument("--data", default=None,
                        help="an NIH-layout root to train on (default: synthesize one under OUT/data)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--images", type=int, default=512, help="synthetic images in all (default: 512)")
    parser.add_argument("--size", type=int, default=48, help="training image side in pixels, >= 32 (default: 48)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--anchor", default="branch", choices=["branch", "shadow", "inplace", "none"])
    parser.add_argument("--loss", default="asl", choices=["bce", "weighted_bce", "focal", "asl"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--distribute", default="none", choices=DISTRIBUTE_CHOICES,
        help="multi-device training: mirrored / multiworker (TensorFlow), data_parallel / multiworker (JAX), "
        "auto = the backend's single-host engine (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    if args.images < 8 or args.epochs < 1 or args.batch_size < 1:
        raise ValueError(
            f"--images must be >= 8 and --epochs, --batch-size >= 1 (got {args.images}, {args.epochs}, {args.batch_size})"
        )
    import keras
    import numpy as np

    import keras_mamsf as mamsf
    from keras_mamsf.data import nih, splits
    from keras_mamsf.data.pipeline import make_dataset
    from keras_mamsf.data.synth import write_synthetic
    from keras_mamsf.evaluation.metrics import per_class_auc
    from keras_mamsf.training import distributed, replica_count
    from keras_mamsf.utils import write_text_atomic

    keras.utils.set_random_seed(args.seed)
    root = args.data
    if root is None:
        root = os.path.join(args.out, "data")
        write_synthetic(root, images=args.images, size=max(args.size, 64), seed=args.seed)
    index = nih.read_nih(root)
    parts = splits.make_splits(index.records, index.lists, "official", seed=args.seed)
    train, test = parts["train"], parts["test"]
    train_ds = make_dataset(train, args.size, args.batch_size, training=True, seed=args.seed, channels=1)
    test_ds = make_dataset(test, args.size, 64, channels=1)
    train_labels = np.stack([r.labels for r in train])
    test_labels = np.stack([r.labels for r in test])
    with distributed(args.distribute) as engine:  # --batch-size is the global batch
        model = mamsf.build_model(
            input_shape=(args.size, args.size, 1),
            anchor=None if args.anchor == "none" else args.anchor,
            fusion_filters=64,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3),
            loss=mamsf.losses.get_loss(args.loss, labels=train_labels if args.loss == "weighted_bce" else None),
        )
        history = model.fit(train_ds, epochs=args.epochs, shuffle=False, verbose=0 if args.json else 2,
                            callbacks=mamsf.default_callbacks())
        probs = model.predict(test_ds, verbose=0)
        replicas = replica_count(engine)
    auc = per_class_auc(test_labels, probs, mamsf.CHESTXRAY14_LABELS)

    os.makedirs(args.out, exist_ok=True)
    model_path = mamsf.save_model(model, os.path.join(args.out, "model.keras"))
    reloaded = mamsf.load_model(model_path)
    reload_diff = float(np.abs(reloaded.predict(test_ds, verbose=0) - probs).max())
    layer = model.anchor_layers[0]
    report = {
        "data": (f"SYNTHETIC ChestX-ray14-layout data (mamsf synth, seed {args.seed}; not chest X-rays): {root}"
                 if args.data is None else root),
        "images": {"train": len(train), "eval": len(test), "size": args.size, "skipped": index.skipped},
        "backend": keras.backend.backend(),
        "distribute": args.distribute,
        "replicas": replicas,
        "anchor": args.anchor,
        "anchor_step": None if layer.step is None else int(layer.step.numpy()),
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "loss": args.loss,
        "final_train_loss": float(history.history["loss"][-1]),
        "auc": auc,
        "model": model_path,
        "reload_max_abs_diff": reload_diff,
        "seed": args.seed,
    }
    write_text_atomic(os.path.join(args.out, "demo.json"), json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"data: {report['data']}; train {len(train)}, eval (test split) {len(test)}, {args.size} px")
        print(f"backend {report['backend']}, distribute {args.distribute} ({replicas} replica(s))")
        print(f"anchor {args.anchor}: {report['anchor_step']} anchor updates over {report['optimizer_steps']} optimizer steps")
        print(f"final train loss ({args.loss}): {report['final_train_loss']:.4f}")
        for label, entry in auc["per_class"].items():
            value = "n/a (no positives or no negatives)" if entry["auc"] is None else f"{entry['auc']:.3f}"
            print(f"  {label:<20} AUC {value:<36} positives {entry['positives']}")
        print(f"macro AUC over {auc['classes_scored']} scorable classes: {auc['macro']:.3f}")
        print(f"saved {model_path}; reloaded with safe_mode, max |dp| = {reload_diff:.2e}")
    return 0
