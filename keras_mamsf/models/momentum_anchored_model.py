"""`MomentumAnchoredModel`: a functional `keras.Model` whose training step advances its anchors."""

import keras
from keras import ops

from keras_mamsf.anchor.momentum_anchor import MomentumAnchor

@keras.saving.register_keras_serializable(package="keras_mamsf")
class MomentumAnchoredModel(keras.Model):
    """A functional model containing `MomentumAnchor` layers.

    `train_step` runs the backend's own step (`super().train_step`: loss scaling,
    gradient, optimizer update) and then one anchor update per `MomentumAnchor` layer.
    The update is gated on the optimizer having really stepped: its `iterations`
    advanced. A float16 step skipped by `LossScaleOptimizer` does not advance it, and
    with `gradient_accumulation_steps=k` it counts updates (micro-steps // k), so the
    anchor's step counter counts real updates only.

    All anchor settings live in the `MomentumAnchor` layers, so the model's config is a
    plain functional config (hence the `*args, **kwargs` constructor, which Keras needs
    to revive a functional subclass from a `.keras` file).
    """

    def __init__(self, *args, **kwargs):  # exactly this signature: Keras revives it as functional
        super().__init__(*args, **kwargs)

    # -- introspection -------------------------------------------------------------
    @property
    def anchor_layers(self):
        return [layer for layer in self._flatten_layers(include_self=False) if isinstance(layer, MomentumAnchor)]

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
        """The backend's own step, then one anchor update per `MomentumAnchor` layer.

        TensorFlow and PyTorch: `train_step(data) -> logs`, the variables change in
        place (on PyTorch the update runs under `torch.no_grad()`). JAX:
        `train_step(state, data) -> (logs, state)` is stateless, so the update runs
        inside a `keras.StatelessScope` over the returned state and its results go back
        through that state (a plain `assign` would hit the variables that `fit` purges).
        The same `MomentumAnchor.update_anchor` code runs on all three.
        """
        backend = keras.backend.backend()
        if backend == "jax":
            return self._jax_train_step(*args)
        if backend not in ("tensorflow", "torch"):
            raise NotImplementedError(
                f"MomentumAnchoredModel cannot train on the {backend!r} backend; "
                "set KERAS_BACKEND to tensorflow, jax or torch"
            )
        (data,) = args
        iterations_before = ops.copy(self.optimizer.iterations)
        logs = super().train_step(data)
        if backend == "torch":
            import torch

            with torch.no_grad():
                self._update_anchors(iterations_before)
        else:
            self._update_anchors(iterations_before)
        return logs

    def _jax_train_step(self, state, data):
        optimizer_variables = self.optimizer.variables
        iterations_index = _index_of(self.optimizer.iterations, optimizer_variables)
        iterations_before = state[2][iterations_index]
        logs, state = super().train_step(state, data)
        trainable, non_trainable, optimizer_values, metrics = state
        mapping = (
            list(zip(self.trainable_variables, trainable))
            + list(zip(self.non_trainable_variables, non_trainable))
            + list(zip(optimizer_variables, optimizer_values))
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self._update_anchors(iterations_before)
        # "inplace" also writes online weights (trainable ones and BN statistics).
        trainable = [scope.get_current_value(v) for v in self.trainable_variables]
        non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
        return logs, (trainable, non_trainable, optimizer_values, metrics)

    def _update_anchors(self, iterations_before):
        iterations = ops.convert_to_tensor(self.optimizer.iterations)
        did_update = ops.greater(iterations, iterations_before)
        for layer in self.anchor_layers:
            layer.update_anchor(did_update)


def _index_of(variable, variables):
    for index, candidate in enumerate(variables):
        if candidate is variable:
            return index
    raise ValueError(f"{variable.path} is not among the optimizer's variables")


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
