"""The runners: each artifact in its own runtime, with one interface.

    runner = formats.load_runner("out/model_int8.tflite")  # .keras, SavedModel dir, .tflite, .onnx
    runner.input_shape                                      # (H, W, C)
    runner.predict(images)      # float32 NHWC 0..255 -> {"probs", "logits", "ood_score" (when the artifact has it)}

The runtimes are the ones the artifacts ship to: Keras (`safe_mode=True`), TensorFlow's
SavedModel loader (signature "serve"), the LiteRT interpreter (`ai-edge-litert`, signature
"serve", batch 1, inputs quantized and outputs dequantized with the file's own parameters),
and onnxruntime (CPU). Parity checks and `mamsf predict` both go through these.
"""


import numpy as np

from keras_mamsf.inference.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE


def square_input(runner, path):
    """`(side, channels)` of a runner's input; models here take square images only."""
    height, width, channels = runner.input_shape
    if height != width:
        raise ValueError(f"{path}: square inputs only, got {height}x{width}")
    return int(height), int(channels)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype="float64")))


def scores_from_outputs(outputs, use_output="probs"):
    """Per-class probabilities (float64) from a runner's outputs, through the output the
    artifact's manifest names (`"logits"`: the sigmoid is applied here, in float)."""
    return np.asarray(sigmoid(outputs["logits"]) if use_output == "logits" else outputs["probs"], dtype="float64")


def predict_scores(runner, images, use_output="probs", test_time_flip=False, outputs=None):
    """`(scores, outputs)`: per-class probabilities (float64) of `images` and the runner's outputs on them.

    `test_time_flip`: each image's scores are the mean of its probabilities and its left-right mirror's (two
    invocations). Training augments with random left-right flips, so the mirror is a view the model learned to
    read; averaging the two views removes part of the prediction's dependence on the view. Probabilities are
    averaged (not logits): the same rule whichever output an artifact is read through. `outputs` stay the
    image's own (the OOD guard judges the image as it came); pass them as `outputs` when already computed (then
    only the mirror runs).
    """
    images = np.asarray(images, dtype="float32")
    outputs = runner.predict(images) if outputs is None else outputs
    scores = scores_from_outputs(outputs, use_output)
    if test_time_flip:
        mirrored = runner.predict(np.ascontiguousarray(images[:, :, ::-1, :]))
        scores = (scores + scores_from_outputs(mirrored, use_output)) / 2.0
    return scores, outputs


def present(names):
    """The signature's outputs among `names`, in signature order."""
    names = set(names)
    return [name for name in OUTPUT_NAMES if name in names]


class KerasRunner:
    """A `.keras` file, with the OOD guard a `mamsf train` run wrote beside it (`ood_guard.npz`) when there is one."""

    def __init__(self, path):
        from keras_mamsf.guard import guard_beside
        from keras_mamsf.inference.graph import inference_model, input_shape
        from keras_mamsf.models.io import load_model

        self.guard = guard_beside(path)
        self.model = inference_model(load_model(path, compile=False), self.guard)
        self.input_shape = input_shape(self.model)
        self.output_names = present(self.model.output)

    def predict(self, images):
        out = self.model.predict(np.asarray(images, dtype="float32"), verbose=0, batch_size=32)
        return {name: np.asarray(out[name], dtype="float32") for name in self.output_names}


class SavedModelRunner:
    def __init__(self, path):
        import tensorflow as tf

        self._module = tf.saved_model.load(path)
        if SIGNATURE not in self._module.signatures:
            raise ValueError(f"{path}: no {SIGNATURE!r} signature; it has "
                             f"{', '.join(self._module.signatures) or 'none'}")
        self._serve = self._module.signatures[SIGNATURE]
        spec = self._serve.structured_input_signature[1][INPUT_NAME]
        self.input_shape = tuple(int(d) for d in spec.shape[1:])
        self.output_names = present(self._serve.structured_outputs)

    def predict(self, images, batch_size=64):
        import tensorflow as tf

        images = np.asarray(images, dtype="float32")
        parts = [self._serve(**{INPUT_NAME: tf.constant(images[i : i + batch_size])})
                 for i in range(0, len(images), batch_size)]
        return {name: np.concatenate([p[name].numpy() for p in parts]) for name in self.output_names}


class LiteRTRunner:
    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        except ValueError as error:  # LiteRT's words name no file ("not a valid Flatbuffer buffer")
            raise ValueError(f"{path}: not a readable TFLite model ({str(error).splitlines()[0]}); "
                             "is the file complete? export it again") from None
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ValueError(f"{path}: no {SIGNATURE!r} signature; it has {', '.join(signatures) or 'none'}")
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.input_detail = self._runner.get_input_details()[INPUT_NAME]
        self.output_details = self._runner.get_output_details()
        self.output_names = present(self.output_details)
        batch, *shape = (int(d) for d in self.input_detail["shape"])
        if batch != 1:
            raise ValueError(f"{path}: expected a batch-1 input, got {self.input_detail['shape']}")
        self.input_shape = tuple(shape)

    def predict(self, images):
        images = np.asarray(images, dtype="float32")
        outputs = {name: [] for name in self.output_names}
        for image in images:
            result = self._runner(**{INPUT_NAME: quantize(image[None], self.input_detail)})
            for name in outputs:
                outputs[name].append(dequantize(result[name], self.output_details[name]))
        return {name: np.concatenate(values).astype("float32") for name, values in outputs.items()}


def quantize(values, detail):
    """Float values -> the input tensor's dtype with its own (scale, zero point)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(values, detail):
    if np.dtype(detail["dtype"]).kind == "f":
        return values.astype("float32")
    scale, zero_point = detail["quantization"]
    return ((values.astype("float32") - zero_point) * scale).astype("float32")


class OnnxRunner:
    def __init__(self, path, num_threads=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types (InvalidProtobuf, ...)
            reason = str(error).split(" : ")[-1].splitlines()[0][:160]
            raise ValueError(f"{path}: not a readable ONNX model ({reason}); is the file complete? export it "
                             "again") from None
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise ValueError(f"{path}: expected exactly one input named {INPUT_NAME!r}, got {[i.name for i in inputs]}")
        self.input_shape = tuple(int(d) for d in inputs[0].shape[1:])
        self.output_names = present(o.name for o in self.session.get_outputs())

    def predict(self, images):
        values = self.session.run(self.output_names, {INPUT_NAME: np.asarray(images, dtype="float32")})
        return dict(zip(self.output_names, values))
