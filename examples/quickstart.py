"""Quickstart: build MAMSF, train it with `model.fit`, read the anchor, save and reload.

    python examples/quickstart.py

Runs on CPU in a couple of minutes on SYNTHETIC data in the ChestX-ray14 layout (`mamsf synth`:
drawn chest-like images, not X-rays). For the real dataset, point `nih.read_nih` at its root.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

import keras_mamsf as mamsf  # noqa: E402
from keras_mamsf.data import nih, pipeline, splits, synth  # noqa: E402

synth.write_synthetic("runs/quickstart/data", images=256, size=64, seed=0)
index = nih.read_nih("runs/quickstart/data")
parts = splits.make_splits(index.records, index.lists, method="official", val_fraction=0.1, seed=0)
train_ds = pipeline.make_dataset(parts["train"], image_size=48, batch_size=16, training=True, channels=1)
val_ds = pipeline.make_dataset(parts["val"], image_size=48, batch_size=64, channels=1)
x = next(iter(val_ds))[0]
model = mamsf.build_model(
    backbone="efficientnetb0",
    input_shape=(48, 48, 1),  # grayscale is tiled to RGB inside the model
    weights=None,  # "imagenet" downloads once (needs network); or a local *_notop.h5 path
    anchor="branch",  # "shadow", "inplace" or None for the ablation baseline
    anchor_decay=0.999,
    fusion_filters=64,
)
model.compile(
    optimizer=keras.optimizers.AdamW(1e-3),
    loss=mamsf.losses.AsymmetricLoss(),
    metrics=[keras.metrics.AUC(multi_label=True, num_labels=14, name="auc")],
)
model.fit(train_ds, validation_data=val_ds, epochs=2, callbacks=mamsf.default_callbacks())

anchor = model.anchor_layers[0]
print(f"anchor updates: {int(anchor.step.numpy())}, anchored layers: "
      f"{model.anchored_layer_names()[0]} .. {model.anchored_layer_names()[-1]}")
features = model.feature_model()(x[:4])
print({name: tuple(value.shape) for name, value in features.items()})

path = mamsf.save_model(model, "runs/quickstart/model.keras")  # atomic write
restored = mamsf.load_model(path)  # safe_mode=True, anchor and step counter restored
print("restored anchor step:", int(restored.anchor_layers[0].step.numpy()))
