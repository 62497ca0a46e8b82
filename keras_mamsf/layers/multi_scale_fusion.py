"""`MultiScaleFusion`: parallel 1x1 / 3x3 / 5x5 convolutions over a reduced feature map."""

import keras


def _conv_bn_act(filters, kernel_size, activation, name, dtype):
    return keras.Sequential(
        [
            keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv", dtype=dtype),
            keras.layers.BatchNormalization(name=f"{name}_bn", dtype=dtype),
            keras.layers.Activation(activation, name=f"{name}_act", dtype=dtype),
        ],
        name=name,  # a container: keras.Sequential takes no dtype, its layers compute
    )


@keras.saving.register_keras_serializable(package="keras_mamsf")
class MultiScaleFusion(keras.layers.Layer):
    """Multi-scale fusion head of the MAMSF model.

        x -> 1x1 conv-BN-act (reduce to `filters`)
          -> [k x k conv-BN-act (`branch_filters`) for k in kernel_sizes]   (parallel)
          -> concat -> 1x1 conv-BN-act (`filters`)

    Convolutions use "same" padding, so the spatial size is kept. Every op (Conv2D with
    BatchNorm folded, the activation, concatenation) converts to int8 TFLite builtins;
    `activation="relu6"` is the Edge TPU-friendliest choice. Every sub-layer gets this
    layer's dtype policy.

    Args:
        filters: channels of the reduced map and of the output.
        kernel_sizes: odd kernel sizes of the parallel branches.
        branch_filters: channels of each branch (default `filters`).
        activation: activation after every BatchNorm.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> fusion = MultiScaleFusion(8, (1, 3), dtype="mixed_bfloat16")
    >>> fusion(keras.ops.ones((1, 7, 7, 16))).shape
    (1, 7, 7, 8)
    """

    def __init__(self, filters=256, kernel_sizes=(1, 3, 5), branch_filters=None, activation="swish", **kwargs):
        super().__init__(**kwargs)
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if int(filters) <= 0 or not kernel_sizes or any(k <= 0 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(
                f"MultiScaleFusion needs filters > 0 and odd positive kernel sizes, got {filters!r}, {kernel_sizes!r}"
            )
        self.filters = int(filters)
        self.kernel_sizes = kernel_sizes
        self.branch_filters = int(branch_filters) if branch_filters else self.filters
        self.activation = activation
        policy = self.dtype_policy  # every sub-layer computes in this layer's policy
        self.reduce = _conv_bn_act(self.filters, 1, activation, "reduce", policy)
        self.branches = [
            _conv_bn_act(self.branch_filters, k, activation, f"branch_{k}x{k}", policy) for k in kernel_sizes
        ]
        self.fuse = _conv_bn_act(self.filters, 1, activation, "fuse", policy)

    @property
    def sublayers(self):
        """The conv-BN-activation stacks, in call order (for `utils.layers.walk_layers`)."""
        return [self.reduce, *self.branches, self.fuse]

    def build(self, input_shape):
        self.reduce.build(input_shape)
        reduced = tuple(input_shape[:-1]) + (self.filters,)
        for branch in self.branches:
            branch.build(reduced)
        self.fuse.build(tuple(input_shape[:-1]) + (self.branch_filters * len(self.branches),))
        self.built = True

    def call(self, inputs, training=None):
        x = self.reduce(inputs, training=training)
        x = keras.ops.concatenate([branch(x, training=training) for branch in self.branches], axis=-1)
        return self.fuse(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": list(self.kernel_sizes),
                "branch_filters": self.branch_filters,
                "activation": self.activation,
            }
        )
        return config
