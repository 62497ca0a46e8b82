"""Writes tests/data/v0_2_tiny.keras with the code before the floor-plan change (commit 2d125f8,
release 0.2 layout: `MomentumAnchoredModel` whose config is `build_model`'s arguments).

A 14-class float32 "branch" model on the test backbone at 32 px, one training step taken, so the
anchor differs from the online block; `v0_2_tiny_expected.npz` holds its outputs on four images.
Run from the repository root: `python tests/data/make_v0_2.py`.
"""
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mamsf as mamsf  # noqa: E402

keras.utils.set_random_seed(7)
model = mamsf.build_model(backbone="test_efficientnet", input_shape=(32, 32, 1), num_classes=14, anchor="branch",
                          anchor_decay=0.9, fusion_filters=8, fusion_kernels=(1, 3), dropout=0.0)
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", run_eagerly=True)
rng = np.random.default_rng(0)
xs = rng.uniform(0, 255, (4, 32, 32, 1)).astype("float32")
ys = (rng.random((4, 14)) < 0.3).astype("float32")
model.train_on_batch(xs, ys)
# A fresh, unbuilt optimizer: the file keeps weights and anchor, not Adam's moments (1.2 MB -> small).
model.compile(optimizer="sgd", loss="binary_crossentropy")
mamsf.save_model(model, "tests/data/v0_2_tiny.keras")
np.savez("tests/data/v0_2_tiny_expected.npz", x=xs, probs=model.predict(xs, verbose=0))
print(type(model).__name__, model.get_config()["build_arguments"], os.path.getsize("tests/data/v0_2_tiny.keras"))
