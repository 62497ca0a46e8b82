"""Writes tests/data/legacy_v0_tiny.keras with the pre-config-driven code (commit 1b0487a)."""
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
import numpy as np

import keras_mamsf as mamsf
from keras_mamsf.anchor.momentum_anchor import MomentumAnchor
from keras_mamsf.layers import GrayscaleToRGB, MultiScaleFusion

keras.utils.set_random_seed(3)
keras.config.set_dtype_policy("mixed_float16")
image = keras.Input((16, 16, 1), name="image")
x = GrayscaleToRGB(name="grayscale_to_rgb")(image)
x = keras.layers.Conv2D(4, 3, strides=2, name="stem_conv")(x)
bi = keras.Input((7, 7, 4))
b = keras.layers.Conv2D(6, 1, name="top_conv")(bi)
b = keras.layers.BatchNormalization(name="top_bn")(b)
block = keras.Model(bi, b, name="final_block")
x = MomentumAnchor(block, mode="branch", decay=0.9, name="momentum_anchor")(x)
x = MultiScaleFusion(4, (1, 3), name="fusion")(x)
x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
logits = keras.layers.Dense(3, dtype="float32", name="logits")(x)
probs = keras.layers.Activation("sigmoid", dtype="float32", name="probs")(logits)
model = mamsf.MomentumAnchoredModel(image, probs, name="legacy_tiny")
keras.config.set_dtype_policy("float32")
model.compile(optimizer="adam", loss="binary_crossentropy")
rng = np.random.default_rng(0)
xs = rng.uniform(0, 255, (4, 16, 16, 1)).astype("float32")
ys = (rng.random((4, 3)) < .5).astype("float32")
model.train_on_batch(xs, ys)
mamsf.save_model(model, "tests/data/legacy_v0_tiny.keras")
np.savez("tests/data/legacy_v0_tiny_expected.npz", x=xs, probs=model.predict(xs, verbose=0))
print(model.optimizer, os.path.getsize("tests/data/legacy_v0_tiny.keras"))
