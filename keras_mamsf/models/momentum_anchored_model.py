"""`MomentumAnchoredModel`: a functional `keras.Model` whose training step advances its anchors."""

import keras

from keras_mamsf.anchor.momentum_anchor import MomentumAnchor
from keras_mamsf.models.anchor_step import anchored_step
from keras_mamsf.utils.layers import walk_layers


@keras.saving.register_keras_serializable(package="keras_mamsf")
class MomentumAnchoredModel(keras.Model):
    """A functional model containing `MomentumAnchor` layers.

    `train_step` runs the backend's own step (`super().train_step`: loss scaling,
    gradient, optimizer update) and then one anchor update per `MomentumAnchor` layer,
    gated on the optimizer having really stepped (see `models/anchor_step.py`): a float16
    step skipped by `LossScaleOptimizer` and a gradient-accumulation micro-step leave the
    anchor, its step counter and (for "inplace") the online block as they are.

    A model assembled by hand (`MomentumAnchoredModel(inputs, outputs)`) and a `.keras` file of
    0.1 keep the plain functional config. The MAMSF network itself is `MAMSFClassifier`, a subclass
    that is its own config; a 0.2 file (this class, its config `build_arguments`) is revived as one.
    """

    # A hand-assembled model has no build arguments; `MAMSFClassifier` has.
    build_arguments = None

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "build_arguments" not in config:
            return super().from_config(config, custom_objects=custom_objects)
        # A 0.2 file: its config is the classifier's arguments. Looked up by its registered name, as
        # Keras does, because the classifier's module imports this one.
        classifier = keras.saving.get_registered_object("keras_mamsf>MAMSFClassifier")
        if classifier is None:
            raise TypeError("a 0.2 MAMSF file needs keras_mamsf.models imported (it registers MAMSFClassifier)")
        return classifier.from_config({**config["build_arguments"], "name": config.get("name"),
                                       "trainable": config.get("trainable", True), "dtype": config.get("dtype")})

    # -- introspection -------------------------------------------------------------
    @property
    def anchor_layers(self):
        return [layer for layer in walk_layers(self) if isinstance(layer, MomentumAnchor)]

    @property
    def anchor_mode(self):
        modes = {layer.mode for layer in self.anchor_layers}
        return modes.pop() if len(modes) == 1 else None

    def anchor_pairs(self):
        """`[(online_variable, anchor_variable), ...]` over every anchored block."""
        return [pair for layer in self.anchor_layers for pair in layer.anchor_pairs()]

    def anchored_layer_names(self):
        return [name for layer in self.anchor_layers for name in layer.block_layer_names]

    def feature_model(self):
        """`image -> {"online", "anchor", "probs"}`: pooled block features and probabilities.

        For "branch" the anchor features come from the anchor branch; for "shadow" and
        "inplace" from the block run with the EMA weights; for `None` (no anchor) they
        repeat the online features, so monitoring code runs unchanged on the baseline.
        The view shares this model's layers and variables: it always sees the current
        weights. Inference mode throughout.
        """
        anchor_layer = self._single_anchor_layer()
        before = keras.Model(self.inputs, anchor_layer.input)
        after = keras.Model(anchor_layer.output, self.output)
        image = keras.Input(shape=self.inputs[0].shape[1:], name="image", dtype=self.inputs[0].dtype)
        online, anchor = _AnchorFeatures(anchor_layer, name="anchor_features")(before(image))
        probs = after(anchor_layer.merge(online, anchor, training=False))
        pool = keras.layers.GlobalAveragePooling2D(dtype="float32")
        return keras.Model(
            image,
            {"online": pool(online), "anchor": pool(anchor), "probs": probs},
            name=f"{self.name}_features",
        )

    def _single_anchor_layer(self):
        layers = self.anchor_layers
        if len(layers) != 1:
            raise ValueError(f"{self.name} has {len(layers)} MomentumAnchor layers; feature_model() needs exactly one")
        return layers[0]

    # -- training ------------------------------------------------------------------
    def train_step(self, *args):
        """The backend's own step, then one anchor update per `MomentumAnchor` layer
        (`anchor_step.anchored_step`: the same update on TensorFlow, JAX and PyTorch)."""
        return anchored_step(self, super().train_step, *args)


class _AnchorFeatures(keras.layers.Layer):
    """Runtime view for `feature_model()`: a `MomentumAnchor`'s `(online, anchor)` maps.

    A layer of its own because a functional graph expects every call of one layer to
    return the same structure, and the anchor layer returns a single map in the model.
    """

    def __init__(self, anchor_layer, **kwargs):
        super().__init__(**kwargs)
        self.anchor_layer = anchor_layer

    def call(self, inputs):
        return self.anchor_layer.features(inputs)
