"""`build_model`: the MAMSF network as DESIGN.md draws it."""

import keras

from keras_mamsf.anchor.momentum_anchor import MomentumAnchor
from keras_mamsf.backbones.efficientnet import load_backbone, split_backbone
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.layers.grayscale_to_rgb import GrayscaleToRGB
from keras_mamsf.layers.multi_scale_fusion import MultiScaleFusion
from keras_mamsf.models.momentum_anchored_model import MomentumAnchoredModel


def build_model(
    backbone="efficientnetb0",
    input_shape=(224, 224, 3),
    num_classes=len(CHESTXRAY14_LABELS),
    weights=None,
    anchor="branch",
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
    dtype_policy=None,
    name=None,
):
    """Build the MAMSF model.

        image (H, W, C), pixels 0..255, C in {1, 3} (1 is tiled to 3)
          -> trunk (backbone up to its last stage)
          -> MomentumAnchor(final block: last stage + top_*)   [online | anchor]
          -> MultiScaleFusion -> global average pool -> dropout
          -> Dense(num_classes) logits (float32) -> sigmoid probabilities (float32)

    The output is the probabilities (named "probs"); the layer "logits" gives the
    logits. `anchor_layers` (layer-name prefixes) anchors other layers than the final
    block: `("block6",)` an earlier stage (the anchor path is stage 6 with EMA weights,
    then stage 7 and top with their online weights), `("stem_", "block", "top_")` the
    whole backbone. `dtype_policy` (e.g. "mixed_bfloat16") applies to this build only, to
    every layer (logits and probabilities stay float32); without it the global policy is
    used. Under "mixed_float16", `compile` wraps the optimizer in a `LossScaleOptimizer`.

    The returned model keeps these arguments (`model.build_arguments`): its config, so a
    saved model reloads by calling `build_model` again (`weights=None`, then the saved
    weights), with the same dtype policy.
    """
    height, width, channels = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise ValueError(f"input_shape must have 1 (grayscale) or 3 channels, got {tuple(input_shape)}")
    if int(num_classes) <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    arguments = {
        "backbone": backbone,
        "input_shape": [height, width, channels],
        "num_classes": int(num_classes),
        "anchor": anchor,
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
    policy = keras.dtype_policies.get(dtype_policy) if dtype_policy is not None else keras.config.dtype_policy()
    previous_policy = keras.config.dtype_policy()
    # keras.applications builds take no dtype: the global policy is theirs for this build only.
    keras.config.set_dtype_policy(policy)
    try:
        image = keras.Input(shape=(height, width, channels), name="image")
        x = GrayscaleToRGB(name="grayscale_to_rgb", dtype=policy)(image) if channels == 1 else image
        trunk, block = split_backbone(load_backbone(backbone, (height, width, 3), weights), anchor_layers)
        x = trunk(x)
        x = MomentumAnchor(
            block,
            mode=anchor,
            decay=anchor_decay,
            warmup=anchor_warmup,
            warmup_gamma=anchor_warmup_gamma,
            warmup_power=anchor_warmup_power,
            anchored=tuple(anchor_layers) if anchor_layers else None,
            name="momentum_anchor",
            dtype=policy,
        )(x)
        x = MultiScaleFusion(fusion_filters, fusion_kernels, activation=fusion_activation, name="fusion", dtype=policy)(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=policy)(x)
        x = keras.layers.Dropout(dropout, name="head_dropout", dtype=policy)(x)
        logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
        probs = keras.layers.Activation("sigmoid", dtype="float32", name="probs")(logits)
        suffix = "none" if anchor is None else anchor
        return MomentumAnchoredModel(
            image,
            probs,
            name=name or f"mamsf_{str(backbone).lower()}_{suffix}",
            dtype=policy,
            build_arguments=arguments,
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)
