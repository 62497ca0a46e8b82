"""The SavedModel every TFLite conversion and the `savedmodel` artifact start from."""

import keras

from keras_mamsf.inference.graph import input_shape
from keras_mamsf.inference.signature import INPUT_NAME, SIGNATURE


def serving_archive(model, batch_size=None):
    """A `keras.export.ExportArchive` with endpoint "serve": `image` (NHWC, pixels 0..255,
    float32, batch `batch_size` or dynamic) -> `{"probs", "logits"}`; `training=False`."""
    import tensorflow as tf

    height, width, channels = input_shape(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((batch_size, height, width, channels), tf.float32, name=INPUT_NAME)

    def serve(image):
        return model(image, training=False)

    archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
    return archive
