"""The anchored training step: the backend's own update, then the anchors' EMA step.

One update function (`update_anchors`) and a thin adapter per backend, because the three
trainers differ in how a step returns its state:

- TensorFlow: `train_step(data) -> logs`; variables change in place (in a tf.function).
- PyTorch: the same, and the anchor update runs under `torch.no_grad()`.
- JAX: `train_step(state, data) -> (logs, state)` is stateless; the update runs inside a
  `keras.StatelessScope` over the returned state and its writes go back through that
  state (a plain `assign` would hit the variables that `fit` purges).

Whether the optimizer really updated is read from `optimizer.iterations` before and
after: it does not advance on a float16 step that `LossScaleOptimizer` skips, and with
`gradient_accumulation_steps=k` it counts real updates (micro-steps // k), so the anchor
advances once per real update.
"""

import keras
from keras import ops

from keras_mamsf.utils.keras_internals import jax_state_from_scope, jax_state_mapping


def update_anchors(model, did_update):
    """One EMA step on every `MomentumAnchor` of `model`, gated on `did_update`."""
    for layer in model.anchor_layers:
        layer.update_anchor(did_update)


def anchored_step(model, base_step, *args):
    """`base_step` (the backend trainer's `train_step`, bound) followed by the anchor update."""
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_step(model, base_step, *args)
    if backend == "tensorflow":
        return _in_place_step(model, base_step, *args)
    if backend == "torch":
        import torch

        # Only around the anchor update: base_step needs its gradients.
        return _in_place_step(model, base_step, *args, no_grad=torch.no_grad)
    raise NotImplementedError(
        f"MomentumAnchoredModel cannot train on the {backend!r} backend; set KERAS_BACKEND to tensorflow, jax or torch"
    )


def _in_place_step(model, base_step, data, no_grad=None):
    before = ops.copy(ops.convert_to_tensor(model.optimizer.iterations))
    logs = base_step(data)
    did_update = ops.greater(ops.convert_to_tensor(model.optimizer.iterations), before)
    if no_grad is None:
        update_anchors(model, did_update)
    else:
        with no_grad():
            update_anchors(model, did_update)
    return logs


def _jax_step(model, base_step, state, data):
    before = _iterations_in(model, state)
    logs, state = base_step(state, data)
    with keras.StatelessScope(state_mapping=jax_state_mapping(model, state)) as scope:
        did_update = ops.greater(ops.convert_to_tensor(model.optimizer.iterations), before)
        update_anchors(model, did_update)
    # "inplace" also writes online weights (trainable ones and BatchNorm statistics).
    return logs, jax_state_from_scope(model, scope, state)


def _iterations_in(model, state):
    """`optimizer.iterations` as `state` holds it; a computed value (not a variable) under
    gradient accumulation, so it is evaluated over the state, not looked up in it."""
    with keras.StatelessScope(state_mapping=jax_state_mapping(model, state)):
        return ops.convert_to_tensor(model.optimizer.iterations)
