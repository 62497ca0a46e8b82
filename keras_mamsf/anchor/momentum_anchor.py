"""`MomentumAnchor`: a block plus a slowly-evolving (EMA) copy of its weights."""

import keras
from keras import ops

from keras_mamsf.anchor.modes import DEFAULT, anchor_mode
from keras_mamsf.anchor.schedule import anchor_decay
from keras_mamsf.utils.layers import leaf_layers


@keras.saving.register_keras_serializable(package="keras_mamsf")
class MomentumAnchor(keras.layers.Layer):
    """Wraps a block (usually the backbone's final stage) and keeps its momentum anchor.

    After every real optimizer update (see `MomentumAnchoredModel.train_step`):

        theta_bar <- m_t * theta_bar + (1 - m_t) * theta

    for every floating-point weight of the block, BatchNorm moving statistics included,
    with `m_t = anchor_decay(t, decay, warmup, ...)` and `t` the number of earlier real
    updates. The anchor `theta_bar` lives in float32 variables owned by this layer
    (never trainable, `aggregation="mean"` so replicas agree; the int step counter uses
    `"only_first_replica"`). They start as copies of the online weights.

    What the mode changes (the columns of `keras_mamsf.anchor.modes`, which this layer reads):

    - `"branch"`: the forward pass runs the block twice, with the online weights and
      (in inference mode) with the anchor weights, and returns both feature maps
      concatenated on the channel axis. Gradients reach the input through both paths;
      the anchor weights get none.
    - `"shadow"`: training runs the online block only; inference (`training` falsy:
      `evaluate`, `predict`, export) runs the block with the anchor weights. This is
      Keras' `use_ema` + `SwapEMAWeights` restricted to this block, without swapping:
      the anchor weights are read in place, so no state can be left swapped.
    - `"inplace"`: after the update the online weights are set to the anchor
      (theta <- theta_bar). For plain SGD this equals scaling the block's learning rate
      by (1 - m) (and, for BatchNorm statistics, using momentum
      1 - (1 - m) * (1 - bn_momentum)); `tests/test_anchor_modes.py` shows it.
    - `None`: no anchor at all; the ablation baseline with the same head.

    The block is what runs twice (or with swapped weights); `anchored` (layer-name
    prefixes, default: all of the block) chooses whose weights get the anchor. Layers of
    the block outside it keep their online weights on both paths, so anchoring an
    earlier stage means: the anchor path is that stage with EMA weights followed by the
    later stages with their online weights.

    `features(x)` returns `(online_features, anchor_features)` in every mode (for `None`
    both are the online features); `feature_model()` uses it.
    """

    def __init__(
        self,
        block,
        mode=DEFAULT.value,
        decay=0.999,
        warmup=True,
        warmup_gamma=1.0,
        warmup_power=2.0 / 3.0,
        anchored=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mode_spec = anchor_mode(mode)
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"anchor decay must be in [0, 1), got {decay!r}")
        if warmup_gamma <= 0 or warmup_power <= 0:
            raise ValueError(
                f"anchor warmup gamma and power must be positive, got {warmup_gamma!r}, {warmup_power!r}"
            )
        if not isinstance(block, keras.layers.Layer):
            raise TypeError(f"MomentumAnchor wraps a keras Layer or Model, got {type(block).__name__}")
        self.block = block
        self.mode = self.mode_spec.value  # the config's spelling (None for no anchor)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.warmup_gamma = float(warmup_gamma)
        self.warmup_power = float(warmup_power)
        if anchored is not None and (isinstance(anchored, str) or not all(isinstance(p, str) and p for p in anchored)):
            raise ValueError(f"anchored must be a list of layer-name prefixes or None, got {anchored!r}")
        self.anchored = None if anchored is None else tuple(anchored)
        self._online_weights = []
        self._anchor_weights = []
        self.step = None

    def build(self, input_shape):
        if not self.block.built:
            self.block.build(input_shape)
        self._online_weights = [w for layer in self._anchored_layers() for w in layer.weights if _is_floating(w)]
        if not self._online_weights and self.mode_spec.has_anchor:
            raise ValueError(f"anchored={self.anchored} selects no weights in block {self.block.name}")
        if self.mode_spec.has_anchor:
            self._anchor_weights = [
                self.add_weight(
                    shape=w.shape,
                    dtype="float32",
                    initializer=_copy_of(w),
                    trainable=False,
                    autocast=False,
                    aggregation="mean",
                    name=w.path.replace("/", "_"),
                )
                for w in self._online_weights
            ]
            self.step = self.add_weight(
                shape=(),
                dtype="int32",
                initializer="zeros",
                trainable=False,
                aggregation="only_first_replica",
                name="anchor_step",
            )
        self.built = True

    # -- forward -------------------------------------------------------------------
    def call(self, inputs, training=None):
        path = "both" if training and self.mode_spec.both_paths_in_training else (
            "online" if training else self.mode_spec.inference_path)
        online = None if path == "anchor" else self.block(inputs, training=training)
        anchor = None if path == "online" else self._anchor_forward(inputs)
        return self.merge(online, anchor, training)

    def features(self, inputs):
        """`(online, anchor)` feature maps in inference mode (both online for mode None)."""
        online = self.block(inputs, training=False)
        anchor = self._anchor_forward(inputs) if self.mode_spec.has_anchor else online
        return online, anchor

    def merge(self, online, anchor, training=None):
        """What the layer hands on: both maps concatenated for "branch", else one of them."""
        if self.mode_spec.concatenates:
            return ops.concatenate([online, anchor], axis=-1)
        if self.mode_spec.inference_path == "anchor" and not training and anchor is not None:
            return anchor
        return online

    def _anchor_forward(self, inputs):
        if not self.mode_spec.has_anchor:
            return None
        with keras.StatelessScope(state_mapping=self.anchor_state_mapping()):
            return self.block(inputs, training=False)

    def anchor_state_mapping(self):
        """`[(block variable, value), ...]` for a `keras.StatelessScope` in which the block runs with
        the anchor's weights: each anchored variable mapped to its anchor, the others to themselves.
        Every variable the block reads is mapped: on JAX the unmapped ones are purged during fit."""
        paired = {id(w) for w in self._online_weights}
        mapping = list(zip(self._online_weights, self._anchor_weights))
        return mapping + [(v, v.value) for v in self.block.variables if id(v) not in paired]

    # -- the anchor update ---------------------------------------------------------
    def update_anchor(self, did_update=True):
        """One EMA step; a no-op (counter included) where `did_update` is false or the
        online weights hold a non-finite value.

        `did_update` is a boolean scalar (tensor or Python bool): whether the optimizer
        really changed the weights in this step (a float16 step skipped by the loss
        scaler did not). Written with `keras.ops` only, so the same code runs in a TF
        graph, under `torch.no_grad()` and inside a JAX `StatelessScope`.
        """
        if not self.mode_spec.has_anchor:
            return
        # A diverged step (non-finite online weights) never reaches the anchor, so training
        # can fall back on it; TerminateOnNaN in the default callbacks then stops the run.
        finite = [ops.all(ops.isfinite(online.value)) for online in self._online_weights]
        did_update = ops.logical_and(ops.cast(did_update, "bool"), ops.all(ops.stack(finite)))
        m = anchor_decay(
            self.step.value, self.decay, self.warmup, self.warmup_gamma, self.warmup_power
        )
        for online, anchor in zip(self._online_weights, self._anchor_weights):
            blended = m * anchor.value + (1.0 - m) * ops.cast(online.value, "float32")
            new_anchor = ops.where(did_update, blended, anchor.value)
            anchor.assign(new_anchor)
            if self.mode_spec.anchor_to_online:
                # Only after a real update: otherwise this would undo the step's BatchNorm
                # statistics, or put diverged online weights back.
                online.assign(ops.where(did_update, ops.cast(new_anchor, online.dtype), online.value))
        self.step.assign(self.step.value + ops.cast(did_update, "int32"))

    @property
    def sublayers(self):
        """The wrapped block (for `utils.layers.walk_layers`)."""
        return [self.block]

    def anchor_pairs(self):
        """`[(online_variable, anchor_variable), ...]`; empty for mode None."""
        return list(zip(self._online_weights, self._anchor_weights))

    @property
    def anchor_variables(self):
        """The variables this layer owns: the anchor weights and the step counter."""
        return list(self._anchor_weights) + ([self.step] if self.step is not None else [])

    @property
    def block_layer_names(self):
        """Names of the layers the anchor covers (weightless ones included)."""
        return [layer.name for layer in self._anchored_layers()]

    def _anchored_layers(self):
        layers = leaf_layers(self.block)
        return layers if self.anchored is None else [layer for layer in layers if layer.name.startswith(self.anchored)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "block": keras.saving.serialize_keras_object(self.block),
                "mode": self.mode,
                "decay": self.decay,
                "warmup": self.warmup,
                "warmup_gamma": self.warmup_gamma,
                "warmup_power": self.warmup_power,
                "anchored": None if self.anchored is None else list(self.anchored),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["block"] = keras.saving.deserialize_keras_object(config["block"])
        return cls(**config)


def _is_floating(variable):
    return "float" in str(variable.dtype)


def _copy_of(variable):
    # A fresh buffer, never an alias: on JAX a shared buffer breaks buffer donation.
    def initializer(shape, dtype=None):
        return ops.cast(ops.copy(variable.value), dtype or "float32")

    return initializer
