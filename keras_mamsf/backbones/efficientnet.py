"""EfficientNet backbones from `keras.applications`, split into a trunk and a final block.

The split is found from layer names (`blockNx_*` stages and `top_*`), not hard-coded per
variant, so every B0-B7 and V2 variant splits the same way: the final block is the last
stage plus `top_conv`/`top_bn`/`top_activation`.
"""

import os
import re

import keras
import numpy as np

from keras_mamsf.utils.keras_internals import efficientnet_builder, efficientnet_imagenet_stddev


def EfficientNetLite0(include_top=False, weights=None, input_shape=None):
    """EfficientNet-B0 made Edge-friendly, EfficientNet-Lite style: ReLU6 instead of swish and no
    squeeze-and-excitation, the two parts of B0 that post-training int8 quantization handles badly
    (swish widens activation ranges; SE adds a MEAN + LOGISTIC + MUL per block). Same stages and
    layer names as B0 (`block7a_*`, `top_*`), so it splits and anchors the same way. Keras ships
    no ImageNet weights for it: train from scratch or load a local weights file."""
    if weights == "imagenet":
        raise ValueError("keras.applications has no ImageNet weights for efficientnet_lite0")
    efficientnet, default_blocks = efficientnet_builder()
    blocks = [dict(block, se_ratio=0.0) for block in default_blocks]
    return efficientnet(1.0, 1.0, 224, activation="relu6", blocks_args=blocks, name="efficientnet_lite0",
                        include_top=include_top, weights=weights, input_shape=input_shape)


def TestEfficientNet(include_top=False, weights=None, input_shape=None):
    """A four-stage EfficientNet at a quarter of B0's width, for tests and smoke runs (timm's
    `test_efficientnet` convention): B0's stages 1-3 with one block each, then B0's final stage
    (`block4a_*`, expansion 6, squeeze-and-excitation, swish) and `top_*`, built by the same
    Keras builder, so it splits, anchors, saves and exports like B0 (a 2-step TensorFlow `fit` of the
    model at 32 px: 14.5 s against B0's 44.4 s, measured). 44k backbone parameters, output stride
    8: not a model to train for real."""
    if weights == "imagenet":
        raise ValueError("test_efficientnet has no ImageNet weights: it exists for tests and smoke runs")
    efficientnet, default_blocks = efficientnet_builder()
    blocks = [dict(default_blocks[0]), dict(default_blocks[1], repeats=1), dict(default_blocks[2], repeats=1),
              dict(default_blocks[-1], filters_in=default_blocks[2]["filters_out"])]
    return efficientnet(0.25, 1.0, 224, blocks_args=blocks, name="test_efficientnet", include_top=include_top,
                        weights=weights, input_shape=input_shape)


BACKBONES = {
    "efficientnetb0": keras.applications.EfficientNetB0,
    "efficientnetb1": keras.applications.EfficientNetB1,
    "efficientnetb2": keras.applications.EfficientNetB2,
    "efficientnetb3": keras.applications.EfficientNetB3,
    "efficientnetb4": keras.applications.EfficientNetB4,
    "efficientnetb5": keras.applications.EfficientNetB5,
    "efficientnetb6": keras.applications.EfficientNetB6,
    "efficientnetb7": keras.applications.EfficientNetB7,
    "efficientnetv2b0": keras.applications.EfficientNetV2B0,
    "efficientnetv2b1": keras.applications.EfficientNetV2B1,
    "efficientnetv2b2": keras.applications.EfficientNetV2B2,
    "efficientnetv2b3": keras.applications.EfficientNetV2B3,
    "efficientnetv2s": keras.applications.EfficientNetV2S,
    "efficientnet_lite0": EfficientNetLite0,
    "test_efficientnet": TestEfficientNet,
}

# The variants whose `weights="imagenet"` build has one more layer than their `weights=None` build.
IMAGENET_RESCALED = tuple(f"efficientnetb{index}" for index in range(8))

_STAGE = re.compile(r"^block(\d+)[a-z]+_")


def load_backbone(name, input_shape, weights=None):
    """The `keras.applications` model `name` without its top, for RGB `input_shape`.

    `weights`: None (random init), "imagenet" (downloaded by Keras on first use and
    cached under ~/.keras/models), or the path of a weights file for that variant
    without top (`.weights.h5`, or the `*_notop.h5` files Keras publishes). Either way
    the result has the architecture of the `weights=None` build, the one a saved model
    is rebuilt with: see `_imagenet_scaling_folded` for B0-B7's ImageNet weights.
    """
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    if weights not in (None, "imagenet"):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"backbone weights file {path} does not exist: pass weights=None, 'imagenet' or an existing file"
            )
        if not path.endswith(".h5"):
            raise ValueError(f"backbone weights file {path} must be a .weights.h5 or Keras *_notop.h5 weights file")
        weights = path
    try:
        backbone = BACKBONES[key](include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as error:  # Keras raises a bare Exception when the download fails
        if weights != "imagenet":
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RuntimeError(
            f"could not get the ImageNet weights for {key} ({reason}); offline, use weights=None "
            f"(train from scratch), weights=PATH to a local {key}_notop.h5 or .weights.h5 file, "
            "or copy Keras' file into ~/.keras/models/ once"
        ) from None
    if weights is not None and key in IMAGENET_RESCALED:
        backbone = _imagenet_scaling_folded(key, backbone, input_shape)
    return backbone


def _imagenet_scaling_folded(key, backbone, input_shape):
    """A B0-B7 `backbone` just given its weights, in the architecture of its `weights=None` build and,
    for ImageNet weights, with the function of Keras' ImageNet build.

    For ImageNet weights Keras' EfficientNet (B0-B7) adds a `Rescaling(1 / sqrt(stddev))` after its
    `Normalization` (the original divides by the variance: tensorflow/tensorflow#49930), but only
    when built with the string `"imagenet"`: a local copy of the same file loaded by path, and a saved
    MAMSF model (rebuilt from its build arguments with `weights=None`), have no such layer, and would
    scale their input differently from the network the weights were trained in. Both layers are
    per-channel affine, so the scaling folds exactly into the normalization's variance
    ((x - m) / sqrt(v) * r == (x - m) / sqrt(v / r**2), here v * stddev). Folded: Keras' own
    `"imagenet"` build (its weights moved into the `weights=None` build), and a file whose
    normalization holds ImageNet's statistics as Keras' files store them (variance = stddev**2:
    Keras' `*_notop.h5`, or a `weights="imagenet"` Keras model's `save_weights`); not a backbone
    saved after the fold (variance stddev**3), nor any other file.
    """
    from keras_mamsf.models.io import copy_weights

    keras_imagenet_build = sum(isinstance(layer, keras.layers.Rescaling) for layer in backbone.layers) == 2
    if keras_imagenet_build:
        plain = BACKBONES[key](include_top=False, weights=None, input_shape=tuple(input_shape))
        copy_weights(backbone, plain)
        backbone = plain
    normalization = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Normalization))
    variance = keras.ops.convert_to_numpy(normalization.adapt_variance).astype("float64").reshape(-1)
    stddev = np.asarray(efficientnet_imagenet_stddev(), "float64")
    stored_as_keras_files = variance.shape == stddev.shape and np.allclose(variance, stddev**2, rtol=1e-4, atol=0)
    if keras_imagenet_build or stored_as_keras_files:
        normalization.adapt_variance.assign((variance * stddev).astype("float32"))
        normalization.finalize_state()
    return backbone


def last_stage_prefix(backbone):
    """`"blockN"` for the highest stage number N among the backbone's layer names."""
    stages = [int(m.group(1)) for m in (_STAGE.match(layer.name) for layer in backbone.layers) if m]
    if not stages:
        raise ValueError(
            f"backbone {backbone.name} has no 'blockN..._' layers: pass anchor_layers=(prefixes...) explicitly"
        )
    return f"block{max(stages)}"


def split_backbone(backbone, anchor_layers=None):
    """Split `backbone` into `(trunk, block)` sharing its layers.

    `anchor_layers`: layer-name prefixes of the layers to anchor; by default the last stage
    and `top_` (the final block). The block is everything from the first selected layer to
    the output (the part that runs on both paths); `MomentumAnchor(anchored=anchor_layers)`
    then anchors the selected layers only. So ("block6",) anchors stage 6 while stage 7
    and top run with online weights on both paths, and ("stem_", "block", "top_") anchors
    the whole backbone. The first selected layer must start a single-input part (a stage,
    not a layer inside a residual block).
    """
    prefixes = tuple(anchor_layers) if anchor_layers else (last_stage_prefix(backbone), "top_")
    if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise ValueError(f"anchor_layers must be non-empty layer-name prefixes, got {anchor_layers!r}")
    selected = [layer for layer in backbone.layers if layer.name.startswith(prefixes)]
    if not selected:
        raise ValueError(
            f"no layer of {backbone.name} starts with {', '.join(prefixes)}; "
            f"its last stage is {last_stage_prefix(backbone)!r}"
        )
    first = selected[0]
    cut = first.input  # backbone layers are called once, so this is the tensor inside the backbone
    if not isinstance(cut, keras.KerasTensor):
        raise ValueError(f"layer {first.name} has several inputs; anchor_layers must start at a single-input layer")
    trunk = keras.Model(backbone.inputs, cut, name="trunk")
    try:
        block = keras.Model(cut, backbone.outputs[0], name="final_block")
    except ValueError:  # the tail also needs a tensor from before the cut: a residual connection
        raise ValueError(
            f"anchor_layers {prefixes} start at {first.name}, inside a residual block of {backbone.name}; "
            "start them at a stage (e.g. 'block6') or at 'top_'"
        ) from None
    in_block = {layer.name for layer in block.layers if not isinstance(layer, keras.layers.InputLayer)}
    missing = sorted({layer.name for layer in selected} - in_block)
    if missing:
        raise ValueError(
            f"anchor_layers {prefixes} select layers that are not on the path to the output of "
            f"{backbone.name}: {', '.join(missing[:5])}"
        )
    return trunk, block
