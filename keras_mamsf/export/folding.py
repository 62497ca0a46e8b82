"""`fold_grayscale_stem`: the export graph of a grayscale model without its RGB tiling.

A 1-channel MAMSF model tiles the X-ray to three channels (`GrayscaleToRGB`) for the RGB backbone,
whose first layers are a per-channel affine preprocessing (`Rescaling`, `Normalization`), maybe a
`ZeroPadding2D`, and the stem convolution. With the three channels equal, that convolution is a
1-channel one with the per-channel kernels summed (each scaled by its channel's affine factor):

    conv(pad(a_c * g + b_c)) == conv1(pad(g + beta)),  W1 = sum_c a_c * W[..., c, :],  if b_c = a_c * beta

exactly when every channel has the same offset ratio beta = b_c / a_c (a from-scratch model: the
Keras backbone's `Normalization` is the identity, beta = 0; EfficientNetV2-S: `Rescaling(1/128,
-1)`, beta = -128). The zero padding is why the condition is needed: padding zeros of the
normalized map are raw value -beta only when beta is the same for every channel. ImageNet-
normalized backbones (different means per channel) are left as they are.

Measured on EfficientNetB0 at 224 px (LiteRT, 2 threads, `bench/tflite_latency.py`, 2026-11-28): the
tiling was a CONCATENATION of 1-channel inputs (0.41 ms in float32, 0.48 ms in int8: XNNPACK copies one
value per pixel) feeding a 3-channel stem; with the fold the same model's float32 file ran 14.75 ->
13.90 ms and its int8 file 6.61 -> 6.30 ms (one interleaved run), in every exported format alike.
"""

import keras
import numpy as np

from keras_mamsf.layers.grayscale_to_rgb import GrayscaleToRGB

# The folded graph must reproduce the tiled one up to float32 rounding of the summed kernel.
FOLD_TOLERANCE = 1e-5


def fold_grayscale_stem(model, check_images=2, seed=0):
    """`(graph, note)`: `model` (an inference model from `inference_model`) with the grayscale
    tiling folded into its stem convolution, or `model` itself when the fold would not be exact;
    `note` says which, and why not.

    The folded graph shares every other layer (and weight) with `model`, has the same input
    (`image`, 1 channel) and outputs, and is checked against `model` on `check_images` random
    images (max |dp| <= 1e-5), else `model` is returned.

    Example:

    >>> graph, note = fold_grayscale_stem(inference_model(model))
    >>> note
    'folded: grayscale tiling and input scaling merged into stem_conv (1 input channel)'
    """
    tiling = [layer for layer in model.layers if isinstance(layer, GrayscaleToRGB)]
    if not tiling:
        return model, "not folded: the model takes RGB input"
    trunks = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(tiling) != 1 or len(trunks) != 1:
        return model, "not folded: not a build_model graph (one GrayscaleToRGB, one backbone trunk)"
    trunk = trunks[0]
    plan = _stem_plan(trunk)
    if isinstance(plan, str):
        return model, f"not folded: {plan}"
    folded_trunk = _folded_trunk(trunk, plan)
    image = keras.Input(shape=model.inputs[0].shape[1:], name=model.inputs[0].name, dtype="float32")

    def call(layer, *args, **kwargs):
        if layer is tiling[0]:
            return args[0]
        if layer is trunk:
            return folded_trunk(args[0])
        return layer(*args, **kwargs)

    graph = keras.models.clone_model(model, input_tensors=_like(model.input, image),
                                     clone_function=lambda layer: layer, call_function=call)
    error = _max_difference(model, graph, check_images, seed)
    if not error <= FOLD_TOLERANCE:
        return model, f"not folded: the folded graph differs by {error:.3g} (> {FOLD_TOLERANCE:g})"
    return graph, f"folded: grayscale tiling and input scaling merged into {plan['conv'].name} (1 input channel)"


def _stem_plan(trunk):
    """What to fold, or the reason (a string) not to: the affine layers, the padding, the stem
    convolution of `trunk` (in order, each feeding only the next), and the fold's arithmetic."""
    layers = [layer for layer in trunk.layers if not isinstance(layer, keras.layers.InputLayer)]
    consumers = _consumer_counts(trunk)
    scale, offset = np.ones(3), np.zeros(3)
    affine, padding = [], None
    for layer in layers:
        if consumers.get(layer.name, 0) != 1:
            return f"{layer.name} feeds {consumers.get(layer.name, 0)} layers"
        if isinstance(layer, keras.layers.Rescaling) and padding is None:
            factor = np.broadcast_to(np.asarray(layer.scale, "float64").reshape(-1), (3,))
            scale, offset = scale * factor, offset * factor + np.asarray(layer.offset, "float64").reshape(-1)
            affine.append(layer)
        elif isinstance(layer, keras.layers.Normalization) and padding is None:
            if layer.invert or tuple(layer.axis) not in ((-1,), (3,)):
                return f"{layer.name} is not a per-channel normalization"
            mean = np.broadcast_to(np.asarray(keras.ops.convert_to_numpy(layer.mean), "float64").reshape(-1), (3,))
            variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), "float64").reshape(-1)
            divisor = np.broadcast_to(np.maximum(np.sqrt(variance), keras.config.epsilon()), (3,))
            scale, offset = scale / divisor, (offset - mean) / divisor
            affine.append(layer)
        elif isinstance(layer, keras.layers.ZeroPadding2D) and padding is None:
            padding = layer
        elif isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
            if layer.groups != 1 or layer.data_format != "channels_last" or layer.kernel.shape[2] != 3:
                return f"{layer.name} is not a 3-channel channels_last convolution"
            break
        else:
            return f"{layer.name} ({type(layer).__name__}) comes before the stem convolution"
    else:
        return "no stem convolution found"
    if np.any(scale == 0):
        return "the input scaling has a zero factor"
    beta = offset / scale
    if not np.allclose(beta, beta[0], rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(beta).max()))):
        return "the input normalization differs by channel (ImageNet statistics): the zero padding would not fold"
    return {"affine": affine, "padding": padding, "conv": layer, "scale": scale, "beta": float(beta.mean())}


def _consumer_counts(trunk):
    """{layer name: how many layer calls read its output} from the functional config."""
    config = trunk.get_config()  # serializes the whole trunk: once
    counts = {}
    for entry in config["layers"]:
        for node in entry.get("inbound_nodes", []):
            for name in _history_names(node):
                counts[name] = counts.get(name, 0) + 1
    for output in keras.tree.flatten(config["output_layers"]):
        if isinstance(output, str):
            counts[output] = counts.get(output, 0) + 1
    return counts


def _history_names(value):
    """Names of the layers a serialized node argument refers to (`__keras_tensor__` histories)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [name for item in value.values() for name in _history_names(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _history_names(item)]
    return []


def _folded_trunk(trunk, plan):
    """A copy of `trunk` on a 1-channel input: the affine layers dropped (their offset kept as
    one scalar shift), the stem convolution replaced by its 1-channel fold; every other layer shared."""
    conv = plan["conv"]
    kernel = keras.ops.convert_to_numpy(conv.kernel).astype("float64")
    folded_kernel = np.einsum("hwco,c->hwo", kernel, plan["scale"])[:, :, None, :]
    folded = keras.layers.Conv2D.from_config(conv.get_config())
    height, width = trunk.inputs[0].shape[1:3]
    folded.build((None, height, width, 1) if plan["padding"] is None else
                 (None, *plan["padding"].compute_output_shape((None, height, width, 1))[1:3], 1))
    folded.kernel.assign(folded_kernel.astype(folded.kernel.dtype))
    if conv.use_bias:
        folded.bias.assign(keras.ops.convert_to_numpy(conv.bias))
    shift = None if plan["beta"] == 0.0 else keras.layers.Rescaling(1.0, offset=plan["beta"], name="input_shift",
                                                                      dtype=conv.dtype_policy)
    first = plan["affine"][0] if plan["affine"] else None

    def call(layer, *args, **kwargs):
        if layer in plan["affine"]:
            return shift(args[0]) if shift is not None and layer is first else args[0]
        if layer is conv:
            return folded(args[0])
        return layer(*args, **kwargs)

    image = keras.Input(shape=(height, width, 1), name="gray_image", dtype="float32")
    return keras.models.clone_model(trunk, input_tensors=_like(trunk.input, image),
                                    clone_function=lambda layer: layer, call_function=call)


def _like(structure, tensor):
    """`tensor` in the structure of a one-input model's `input` (a list or the tensor itself)."""
    return [tensor] if isinstance(structure, (list, tuple)) else tensor


def _max_difference(model, graph, count, seed):
    if count <= 0:
        return 0.0
    shape = (count, *model.inputs[0].shape[1:])
    images = np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
    reference = model.predict(images, verbose=0)["probs"]
    candidate = graph.predict(images, verbose=0)["probs"]
    return float(np.abs(np.asarray(reference) - np.asarray(candidate)).max())
