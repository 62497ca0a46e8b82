"""int8 weights rounded with error feedback (GPTQ), on the grid the TFLite converter rounds to, so that its
own rounding leaves them as they are.

The converter stores every Conv2D, DepthwiseConv2D and Dense kernel as int8 per output channel: symmetric,
scale = max|w| / 127 over the channel (after folding BatchNorm into it), each weight rounded to the nearest
step on its own. Each layer's output then carries the sum of its inputs times independent rounding errors; on
the ImageNet-start Lite0 recipe that alone (activations kept in float) is a logit error of a quarter of the
logits' spread, and it fails the non-inferiority gate (docs/results.md).

`gptq_round` (Frantar et al., "GPTQ: Accurate post-training quantization for generative pre-trained
transformers", ICLR 2023, after Optimal Brain Quantization) rounds one input column at a time and moves each
column's rounding error onto the columns not yet rounded, through the inverse of the layer's input Gram matrix
H = X^T X measured on calibration images: a greedy minimum of ||X W - X Q||^2 instead of ||W - Q||^2. The
errors then cancel in the layer's output instead of adding up. On that recipe it cut the logit error from the
weights to a quarter (0.25 to 0.06 of the spread), and the full int8 file passed the gate.

Pitfalls, and what is done about each:
- The converter computes its own scale from the kernel it is given. Each channel's largest |w| is held at
  exactly 127 steps (the error feedback never moves it), so the scale stays max|w| / 127 and the converter's
  rounding is the identity on these values.
- BatchNorm folding multiplies each output channel by one factor, which scales that channel's grid with it:
  rounding the unfolded kernel is rounding the folded one.
- The kernels must be the ones the converter sees: round the graph after `folding.fold_grayscale_stem` (the
  three tiled gray channels summed into one kernel); three rounded channels summed are off the grid and
  would be rounded again.
- The momentum anchor's copy of a block runs with its own weights inside a `keras.StatelessScope`: those
  kernels get their own Gram matrices (`utils.keras_internals.in_stateless_scope` tells the two paths apart).
  A kernel that never runs in inference (the online block of "shadow") is left as it is.
- H is damped by 1% of its mean diagonal (GPTQ's default), and an input never seen (a zero diagonal entry)
  gets a unit one, so that H is invertible.
- The Gram matrices come from training films only: the blank and noise images added to the int8 calibration
  for the OOD guard's ranges would weigh the rounding towards inputs the classifier never has to get right.
"""

import contextlib
import time
import warnings

import numpy as np

LEVELS = 127  # symmetric int8 weights: -127..127 (the converter never uses -128 for weights)
DAMPING = 0.01
ACT_ORDER = True
BLOCK = 128
METHODS = ("gptq", "nearest")


def gptq_round(weights, gram, damping=DAMPING, act_order=ACT_ORDER):
    """`weights` (rows, d), one row per output channel, rounded to each row's symmetric int8 grid with error
    feedback. `gram`: the layer's input Gram matrix, (d, d) shared by all rows or (rows, d, d) one per row (a
    depthwise convolution's channels see different inputs). Each row's largest |weight| keeps its value, so
    the row's scale max|w| / 127 is unchanged. `act_order` (a shared Gram matrix only): round the inputs with
    the largest diagonal entries first, while the most columns are left to take their errors (GPTQ's option).

    Example:

    ```python
    x = np.random.default_rng(0).normal(size=(256, 16))
    w = np.random.default_rng(1).normal(size=(4, 16))
    q = gptq_round(w, x.T @ x)   # on the grid of np.abs(w).max(1) / 127, and x @ q.T close to x @ w.T
    ```
    """
    w = np.array(weights, dtype="float64")
    gram = np.array(gram, dtype="float64")
    if act_order and gram.ndim == 2:
        order = np.argsort(-np.diagonal(gram), kind="stable")
        return _gptq_in_order(w[:, order], gram[np.ix_(order, order)], damping)[:, np.argsort(order)]
    return _gptq_in_order(w, gram, damping)


def _gptq_in_order(w, gram, damping, block=BLOCK):
    """`gptq_round` with the columns taken in the order given (`w` is overwritten). With a shared Gram matrix,
    the error of `block` columns at a time reaches the later columns in one matrix product (GPTQ's lazy batch
    update: the same result, without a pass over the whole kernel per column)."""
    rows, width = w.shape
    scale = np.abs(w).max(axis=1) / LEVELS
    scale[scale == 0] = 1.0  # an all-zero channel stays zero
    held = np.abs(w).argmax(axis=1)
    held_value = w[np.arange(rows), held]
    every_row = np.arange(rows)
    upper = _inverse_cholesky(gram, damping)
    shared = upper.ndim == 2
    block = block if shared else width  # one Gram matrix per row: the kernels are small (k*k columns)
    rounded = np.empty_like(w)

    def hold(first):  # the held weights are never moved
        later = held >= first
        w[every_row[later], held[later]] = held_value[later]

    for start in range(0, width, block):
        end = min(start + block, width)
        errors = np.empty((rows, end - start))
        for column in range(start, end):
            value = w[:, column]
            step = np.clip(np.round(value / scale), -LEVELS, LEVELS) * scale
            rounded[:, column] = step
            pivot = upper[column, column] if shared else upper[:, column, column]
            errors[:, column - start] = error = (value - step) / pivot
            w[:, column + 1:end] -= error[:, None] * (upper[column, column + 1:end][None, :] if shared
                                                      else upper[:, column, column + 1:end])
            hold(column + 1)
        if end < width:
            w[:, end:] -= errors @ upper[start:end, end:]
            hold(end)
    return rounded


def _inverse_cholesky(gram, damping):
    """The upper Cholesky factor U of H^-1 (H^-1 = U^T U), H damped; batched over a leading axis."""
    diagonal = np.diagonal(gram, axis1=-2, axis2=-1)
    identity = np.eye(gram.shape[-1])
    damped = (gram + (diagonal == 0)[..., None] * identity
              + damping * diagonal.mean(axis=-1)[..., None, None] * identity)
    return np.swapaxes(np.linalg.cholesky(np.linalg.inv(damped)), -1, -2)


@contextlib.contextmanager
def rounded_for_int8(model, images, batch_size=32, damping=DAMPING):
    """Within the block, every Conv2D, DepthwiseConv2D and Dense kernel of `model` that runs in inference holds
    its `gptq_round` value; the float values are back afterwards, whatever happens inside. Yields a record for
    the manifest: `{"rounding": "gptq", "kernels", "images", "damping", "seconds"}`.

    Args:
        model: the Keras graph the converter is given (after `fold_grayscale_stem`).
        images: float32 (N, H, W, C) 0..255 calibration films (their inputs give each kernel its Gram matrix).

    Example:

    ```python
    with rounded_for_int8(graph, films) as record:
        serving_archive(graph, batch_size=1).write_out(folder)   # the int8 converter's input
    ```
    """
    start = time.perf_counter()
    anchor_of = _anchor_copies(model)
    targets = _kernels(model, anchor_of)
    grams = _gram_matrices(model, targets, images, batch_size, anchor_of)
    originals = {id(variable): np.asarray(variable.numpy()) for _, variable, _ in targets}
    rounded = 0
    try:
        for layer, variable, depthwise in targets:
            gram = grams.get(id(variable))
            if gram is None:
                continue  # never ran in inference: not in the converted graph either
            kernel = originals[id(variable)]
            variable.assign(_from_rows(gptq_round(_rows(kernel, depthwise), gram, damping), kernel.shape,
                                       depthwise).astype(kernel.dtype))
            rounded += 1
        yield {"rounding": "gptq", "kernels": rounded, "images": int(len(images)), "damping": damping,
               "seconds": round(time.perf_counter() - start, 1)}
    finally:
        for _, variable, _ in targets:
            variable.assign(originals[id(variable)])


def _kernels(model, anchor_of):
    """`[(layer, kernel variable, depthwise)]`: every kernel the converter rounds per channel, the anchor's
    copies of them included (`anchor_of`: `_anchor_copies(model)`)."""
    import keras

    from keras_mamsf.utils.layers import walk_layers

    found = []
    for layer in walk_layers(model):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if depthwise and getattr(layer, "depth_multiplier", 1) != 1:
            continue  # its channels interleave in the converter's layout; Lite0 and B0 have none
        if not (depthwise or isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))):
            continue  # (Conv2DTranspose and SeparableConv2D are not Conv2D subclasses; the models have none)
        found.append((layer, layer.kernel, depthwise))
        if id(layer.kernel) in anchor_of:
            found.append((layer, anchor_of[id(layer.kernel)], depthwise))
    return found


def _anchor_copies(model):
    """`{id(online variable): anchor variable}` over every momentum anchor in `model`."""
    from keras_mamsf.utils.layers import walk_layers

    copies = {}
    for layer in walk_layers(model):
        for online, anchor in (layer.anchor_pairs() if hasattr(layer, "anchor_pairs") else []):
            copies[id(online)] = anchor
    return copies


def _gram_matrices(model, targets, images, batch_size, anchor_of):
    """`{id(kernel variable): Gram matrix of its inputs}` over `images` (float64; (C, k*k, k*k) per channel
    for a depthwise kernel), from each layer's inputs as `model` runs eagerly in inference mode."""
    import tensorflow as tf

    from keras_mamsf.utils.keras_internals import in_stateless_scope

    grams = {}
    layers = {id(layer): (layer, depthwise) for layer, _, depthwise in targets}

    def recording(layer, depthwise, call):
        def call_and_record(inputs, *args, **kwargs):
            kernel = layer.kernel
            if in_stateless_scope() and id(kernel) in anchor_of:
                kernel = anchor_of[id(kernel)]  # the anchor path: the block runs on its EMA weights
            rows = _input_rows(layer, depthwise, tf.cast(inputs, "float32"))
            gram = (tf.einsum("nkc,nlc->ckl", rows, rows) if depthwise
                    else tf.matmul(rows, rows, transpose_a=True))
            grams[id(kernel)] = grams.get(id(kernel), 0.0) + tf.cast(gram, "float64").numpy()
            return call(inputs, *args, **kwargs)

        return call_and_record

    calls = {}
    try:
        for key, (layer, depthwise) in layers.items():
            calls[key] = layer.call
            layer.call = recording(layer, depthwise, layer.call)  # an instance attribute shadows the method
        with warnings.catch_warnings():
            # a graph built with inputs=[image] warns when called on the bare tensor; the result is the same
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            for start in range(0, len(images), batch_size):
                model(np.asarray(images[start:start + batch_size], "float32"), training=False)
    finally:
        for key, (layer, _) in layers.items():
            if key in calls:
                del layer.call  # the class's own method again
    return grams


def _input_rows(layer, depthwise, inputs):
    """The rows X of a layer's input for X^T X: (N, d) for Dense and convolutions (patches flattened in the
    kernel's (kh, kw, C) order), (N, k*k, C) for a depthwise convolution."""
    import tensorflow as tf

    if not hasattr(layer, "kernel_size"):  # Dense
        return tf.reshape(inputs, (-1, inputs.shape[-1]))
    size, strides, rate = layer.kernel_size, layer.strides, layer.dilation_rate
    channels = inputs.shape[-1]
    if not depthwise and tuple(size) == (1, 1) and tuple(strides) == (1, 1):
        return tf.reshape(inputs, (-1, channels))
    patches = tf.image.extract_patches(inputs, sizes=[1, size[0], size[1], 1], strides=[1, strides[0], strides[1], 1],
                                       rates=[1, rate[0], rate[1], 1], padding=layer.padding.upper())
    if depthwise:
        return tf.reshape(patches, (-1, size[0] * size[1], channels))
    return tf.reshape(patches, (-1, size[0] * size[1] * channels))


def _rows(kernel, depthwise):
    """A kernel as (output channels, inputs): Conv2D (kh, kw, C, O) and Dense (C, O) -> (O, kh*kw*C);
    depthwise (kh, kw, C, 1) -> (C, kh*kw)."""
    if depthwise:
        return kernel[..., 0].reshape(-1, kernel.shape[2]).T
    return kernel.reshape(-1, kernel.shape[-1]).T


def _from_rows(rows, shape, depthwise):
    if depthwise:
        return rows.T.reshape(shape[:3])[..., None]
    return rows.T.reshape(shape)
