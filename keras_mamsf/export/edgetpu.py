"""Edge TPU readiness of a `.tflite` file, checked without `edgetpu_compiler`.

The flatbuffer is parsed with the schema `ai-edge-litert` ships, and checked against Coral's
requirements (coral.ai/docs/edgetpu/models-intro): only the operations of Coral's table, every
tensor 8-bit (int32 only for biases and shape/axis constants), static shapes, batch 1, and no
tensor with more than three dimensions above 1. The compiler maps ops in order and hands
everything from the first unsupported op on to the CPU, so the first offender is what matters;
the report names it. Passing this check is necessary, not sufficient: the compiler can still
refuse (for example very large activations at high resolution).
"""

import numpy as np

# Coral's supported-operations table, as TFLite builtin names.
EDGETPU_OPS = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
        "EXPAND_DIMS", "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM",
        "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
        "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
        "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
_EIGHT_BIT = {"INT8", "UINT8"}
_INT32_ROLES = {"bias", "shape/axis constant"}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _enum_names(enum):
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def read_model(path_or_bytes):
    schema = _schema()
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else open(path_or_bytes, "rb").read()
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def opcodes(model):
    """`[{"op": name, "version": v}, ...]` for each operator code of the file."""
    names = _enum_names(_schema().BuiltinOperator)
    result = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # the schema keeps both fields
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}"
        result.append({"op": name, "version": int(code.version)})
    return result


def _shape(tensor):
    signature = tensor.shapeSignature
    shape = tensor.shape if signature is None or len(signature) == 0 else signature
    return [int(d) for d in (shape if shape is not None else [])]


def check_edgetpu(path_or_bytes):
    """`{"ready", "first_offending_op", "problems", "ops"}` for a `.tflite` file (or its bytes).

    `problems` lists every violation in graph order ("op 12 LEAKY_RELU: not supported by the
    Edge TPU", "tensor 'x': FLOAT32, ..."); `first_offending_op` is the first operator that
    breaks a rule (None when ready); `ops` the op names with the versions the file uses.
    """
    schema = _schema()
    model = read_model(path_or_bytes)
    codes = opcodes(model)
    type_names = _enum_names(schema.TensorType)
    problems, first = [], None
    if len(model.subgraphs) != 1:
        problems.append(f"{len(model.subgraphs)} subgraphs (control flow); the Edge TPU runs one graph")
    graph = model.subgraphs[0]
    roles = _int32_roles(graph, codes)

    def tensor_problems(index):
        tensor = graph.tensors[index]
        name = (tensor.name or b"").decode(errors="replace")
        kind = type_names.get(tensor.type, str(tensor.type))
        shape = _shape(tensor)
        found = []
        if kind not in _EIGHT_BIT and not (kind == "INT32" and index in roles):
            found.append(f"tensor '{name}' is {kind}, not 8-bit")
        if any(d < 0 for d in shape):
            found.append(f"tensor '{name}' has a dynamic shape {shape}")
        # The rank rule is about activations; constant weights (OHWI filters) are exempt.
        if len(shape) > 3 and any(d > 1 for d in shape[:-3]) and not _has_data(model, tensor):
            found.append(f"tensor '{name}' of shape {shape} has a dimension above 1 outside the 3 innermost")
        return found

    for position, op in enumerate(graph.operators):
        name = codes[op.opcodeIndex]["op"]
        found = []
        if name not in EDGETPU_OPS:
            found.append("not supported by the Edge TPU")
        if name == "MEAN":
            axes = _constant(model, graph, op.inputs[1])
            if axes is None or not set(int(a) % 4 for a in np.ravel(axes)) <= {1, 2}:
                found.append(f"reduces over axes {None if axes is None else np.ravel(axes).tolist()}, only x/y allowed")
        for index in list(op.inputs) + list(op.outputs):
            if index >= 0:
                found.extend(tensor_problems(index))
        for problem in dict.fromkeys(found):
            problems.append(f"op {position} {name}: {problem}")
        if found and first is None:
            first = name
    for index in graph.inputs:
        shape = _shape(graph.tensors[index])
        if shape[:1] != [1]:
            problems.append(f"input batch is {shape[:1]}, the Edge TPU needs batch 1")
            first = first or "INPUT"
    return {"ready": not problems, "first_offending_op": first, "problems": problems,
            "ops": _versions(codes)}


def _versions(codes):
    versions = {}
    for code in codes:
        versions.setdefault(code["op"], []).append(code["version"])
    return {name: sorted(set(v)) for name, v in sorted(versions.items())}


def _int32_roles(graph, codes):
    """Indices of tensors allowed to be int32: biases (3rd input of conv/FC) and shape or axis
    constants (2nd input of RESHAPE / MEAN / PAD / ... )."""
    allowed = set()
    for op in graph.operators:
        name = codes[op.opcodeIndex]["op"]
        inputs = list(op.inputs)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(inputs) > 2:
            allowed.add(inputs[2])
        if name == "TRANSPOSE_CONV":
            allowed.add(inputs[0])
        if name in ("RESHAPE", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "PAD", "EXPAND_DIMS", "TRANSPOSE",
                    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SPLIT", "SQUEEZE") and len(inputs) > 1:
            allowed.add(inputs[1] if name != "SPLIT" else inputs[0])
        if name in ("SLICE", "STRIDED_SLICE"):
            allowed.update(inputs[1:])
    allowed.discard(-1)
    return allowed


def _has_data(model, tensor):
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _constant(model, graph, index):
    if index < 0:
        return None
    tensor = graph.tensors[index]
    if not _has_data(model, tensor):
        return None
    buffer = model.buffers[tensor.buffer]
    dtype = {2: "int32", 4: "int64"}.get(tensor.type)
    return None if dtype is None else np.frombuffer(bytes(bytearray(buffer.data)), dtype=dtype)


def compiler_command(path):
    """The command line for users who have Coral's compiler (x86-64 Debian/Ubuntu)."""
    return f"edgetpu_compiler --show_operations --out_dir . {path}"
