"""`MAMSFClassifier`: the MAMSF network as DESIGN.md draws it, a model that is its own config."""

import keras

from keras_mamsf.anchor.modes import DEFAULT, anchor_mode
from keras_mamsf.anchor.momentum_anchor import MomentumAnchor
from keras_mamsf.backbones.registry import build_backbone
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.layers.grayscale_to_rgb import GrayscaleToRGB
from keras_mamsf.layers.multi_scale_fusion import MultiScaleFusion
from keras_mamsf.models.momentum_anchored_model import MomentumAnchoredModel

# Constructor arguments that describe how to initialise, not what to build: not in the config (a
# reloaded model gets its weights from the file).
LOAD_TIME_ARGUMENTS = ("weights",)
# The layers after the backbone: randomly initialised even when the backbone is pretrained.
HEAD_LAYERS = ("fusion", "logits")


@keras.saving.register_keras_serializable(package="keras_mamsf")
class MAMSFClassifier(MomentumAnchoredModel):
    """The MAMSF classifier (the keras-hub way: the constructor builds the graph from its arguments,
    `get_config()` returns them with the dtype policy, `from_config` is `cls(**config)`).

        image (H, W, C), pixels 0..255, C in {1, 3} (1 is tiled to 3)
          -> trunk (backbone up to the anchored part)
          -> MomentumAnchor(final block: last stage + top)   [online | anchor]
          -> MultiScaleFusion -> global average pool -> dropout
          -> Dense(num_classes) logits (float32) -> sigmoid probabilities (float32)

    Args:
        backbone: a name of `keras_mamsf.backbones.BACKBONES` (`register_backbone` adds one).
        input_shape: `(H, W, C)` of the image input, C 1 (grayscale) or 3.
        num_classes: outputs (14 for ChestX-ray14).
        weights: backbone weights: None (random init), "imagenet" or a local weights file. Not kept
            in the config: a reloaded model takes its weights from the file.
        anchor: "branch", "shadow", "inplace" or None / "none" (`keras_mamsf.anchor.modes`).
        anchor_decay: the EMA's momentum m.
        anchor_warmup: ramp m up from 0 (timm's `ModelEmaV3` schedule).
        anchor_layers: what the anchor covers: None (the backbone's final block), or stage names
            (`["block6"]`: an earlier stage; all of them: the whole backbone) or layer-name prefixes.
        fusion_filters: channels of the multi-scale fusion head.
        fusion_kernels: its parallel kernel sizes.
        dropout: before the classifier.
        anchor_warmup_gamma, anchor_warmup_power: the warmup ramp `1 - (1 + t / gamma) ** -power`.
        fusion_activation: the fusion head's activation.
        dtype: the dtype policy of every layer (e.g. "mixed_bfloat16"); logits and probabilities stay
            float32. None: the global policy. Under "mixed_float16" `compile` wraps the optimizer in
            a `LossScaleOptimizer`.
        name: the model's name (default `mamsf_<backbone>_<anchor>`).

    Example:
        model = MAMSFClassifier(backbone="efficientnetb0", input_shape=(224, 224, 1), anchor="branch")
        model.compile(optimizer="adamw", loss="binary_crossentropy")
        again = MAMSFClassifier.from_config(model.get_config())   # the same graph, fresh weights
    """

    def __init__(
        self,
        backbone="efficientnetb0",
        input_shape=(224, 224, 3),
        num_classes=len(CHESTXRAY14_LABELS),
        weights=None,
        anchor=DEFAULT.value,
        anchor_decay=0.999,
        anchor_warmup=True,
        anchor_layers=None,
        fusion_filters=256,
        fusion_kernels=(1, 3, 5),
        dropout=0.2,
        *,
        anchor_warmup_gamma=1.0,
        anchor_warmup_power=2.0 / 3.0,
        fusion_activation="swish",
        dtype=None,
        name=None,
        **kwargs,
    ):
        height, width, channels = (int(d) for d in input_shape)
        if channels not in (1, 3):
            raise ValueError(f"input_shape must have 1 (grayscale) or 3 channels, got {tuple(input_shape)}")
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        mode = anchor_mode(anchor)
        trainable = kwargs.pop("trainable", True)
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        previous_policy = keras.config.dtype_policy()
        # keras.applications builds take no dtype: the global policy is theirs for this build only.
        keras.config.set_dtype_policy(policy)
        try:
            image = keras.Input(shape=(height, width, channels), name="image")
            x = GrayscaleToRGB(name="grayscale_to_rgb", dtype=policy)(image) if channels == 1 else image
            trunk, block, anchored = build_backbone(backbone, (height, width, 3), weights).split(anchor_layers)
            x = trunk(x)
            x = MomentumAnchor(
                block,
                mode=mode.value,
                decay=anchor_decay,
                warmup=anchor_warmup,
                warmup_gamma=anchor_warmup_gamma,
                warmup_power=anchor_warmup_power,
                anchored=anchored,
                name="momentum_anchor",
                dtype=policy,
            )(x)
            x = MultiScaleFusion(fusion_filters, fusion_kernels, activation=fusion_activation, name="fusion",
                                 dtype=policy)(x)
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=policy)(x)
            x = keras.layers.Dropout(dropout, name="head_dropout", dtype=policy)(x)
            logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
            probs = keras.layers.Activation("sigmoid", dtype="float32", name="probs")(logits)
            super().__init__(image, probs, name=name or f"mamsf_{str(backbone).lower()}_{mode.name}", dtype=policy,
                             **kwargs)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.trainable = trainable
        self._arguments = {
            "backbone": backbone,
            "input_shape": [height, width, channels],
            "num_classes": int(num_classes),
            "anchor": mode.value,
            "anchor_decay": float(anchor_decay),
            "anchor_warmup": bool(anchor_warmup),
            "anchor_layers": None if not anchor_layers else list(anchor_layers),
            "fusion_filters": int(fusion_filters),
            "fusion_kernels": [int(k) for k in fusion_kernels],
            "dropout": float(dropout),
            "anchor_warmup_gamma": float(anchor_warmup_gamma),
            "anchor_warmup_power": float(anchor_warmup_power),
            "fusion_activation": fusion_activation,
        }

    @property
    def build_arguments(self):
        """The architecture arguments (the config without name, trainable and dtype)."""
        return dict(self._arguments)

    def backbone_variables(self):
        """The trainable variables of the backbone (trunk and anchored block, ImageNet's part when pretrained);
        the rest (fusion head, classifier) is the head that starts from random weights."""
        head = {id(variable) for name in HEAD_LAYERS for variable in self.get_layer(name).trainable_variables}
        return [variable for variable in self.trainable_variables if id(variable) not in head]

    def get_config(self):
        return {
            **self._arguments,
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
