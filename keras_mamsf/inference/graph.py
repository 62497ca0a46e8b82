"""The inference graph every export starts from.

`inference_model(model)` rebuilds the trained model under the float32 policy (mixed-precision
graphs do not convert: ONNX refuses them and TFLite would keep float16 / bfloat16 casts),
loads the trained weights (anchor weights included: for "branch" they are part of the graph,
for "shadow" the layer reads them in inference), and returns a model with the two named
outputs of every artifact: `{"probs": sigmoid probabilities, "logits": logits}`, both
float32, computed with `training=False`, and with a guard (`keras_mamsf.guard.OODGuard`) a third,
`"ood_score"` (batch,), computed from the same input image.
"""

import keras

from keras_mamsf.utils.weights import copy_weights


def _float32_config(config):
    """`config` with every mixed dtype policy replaced by float32 (recursively)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            name = config["config"].get("name", "")
            if name.startswith("mixed_"):
                return dict(config, config=dict(config["config"], name="float32"))
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    if config in ("mixed_float16", "mixed_bfloat16"):
        return "float32"
    return config


def float32_rebuild(model):
    """A float32-policy copy of `model` with the same weights, matched by path.

    A model from `build_model` is rebuilt from its build arguments (its config); a
    hand-assembled or pre-0.2 functional model from its layer config.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        rebuilt = model.__class__.from_config(_float32_config(model.get_config()))
    finally:
        keras.config.set_dtype_policy(previous)
    copy_weights(model, rebuilt)
    return rebuilt


def inference_model(model, guard=None):
    """`image -> {"probs", "logits"}` (and `"ood_score"` with a `guard`) in float32 with the trained (and anchor)
    weights."""
    if "logits" not in [layer.name for layer in model.layers]:
        raise ValueError(f"{model.name}: no layer named 'logits'; export needs a model from build_model")
    rebuilt = float32_rebuild(model)
    outputs = {"probs": rebuilt.output, "logits": rebuilt.get_layer("logits").output}
    if guard is not None:
        if guard.image_size and guard.image_size != int(rebuilt.inputs[0].shape[1]):
            raise ValueError(f"{model.name}: the OOD guard was fitted at {guard.image_size} px, the model takes "
                             f"{rebuilt.inputs[0].shape[1]} px; fit it again at the model's size")
        layer = guard.layer(name="ood_score", dtype="float32")
        if guard.has_features:
            from keras_mamsf.guard.ood_guard import feature_tensor

            features = feature_tensor(rebuilt)
            if features is None:
                raise ValueError(f"{model.name}: the OOD guard reads backbone features this model does not have; "
                                 "fit the guard with this model")
            outputs["ood_score"] = layer([rebuilt.inputs[0], features])
        else:
            outputs["ood_score"] = layer(rebuilt.inputs[0])
    return keras.Model(rebuilt.inputs, outputs, name=f"{model.name}_inference")


def input_shape(model):
    """`(height, width, channels)` of the model's image input."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ValueError(f"{model.name}: export needs a fixed (H, W, C) image input, got {shape}")
    return tuple(int(d) for d in shape)
