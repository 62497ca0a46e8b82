"""`GrayscaleToRGB`: lets a 1-channel input feed an RGB backbone."""

import keras


@keras.saving.register_keras_serializable(package="keras_mamsf")
class GrayscaleToRGB(keras.layers.Layer):
    """Repeats a single channel three times (a CONCATENATION builtin in TFLite)."""

    def call(self, inputs):
        if inputs.shape[-1] != 1:
            raise ValueError(f"GrayscaleToRGB expects 1 channel, got shape {inputs.shape}")
        return keras.ops.concatenate([inputs, inputs, inputs], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)
