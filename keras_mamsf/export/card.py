"""Writes the model card (`keras_mamsf.inference.card`: what it holds, where each format keeps it, and the digest
that ties it to its file) into an exported artifact, atomically.

    card = embed_card("exports/model_int8.tflite", card_from_manifest(record, entry))

TFLite: the flatbuffer is unpacked into the schema's object API and packed again with one more buffer and
metadata entry (as TensorFlow's `flatbuffer_utils` and the TFLite Support metadata writer do), every buffer's data
aligned to 16 bytes as the converter lays them out (the schema's `force_align: 16`, which the generated Python
packer ignores). Nothing else changes: the operators, tensors and weights are the converter's (the export tests
check that the file's outputs are bit-identical with and without the card).
"""

import json
import os

import numpy as np

from keras_mamsf.inference.card import (
    CARD_FILE,
    CARD_NAME,
    DIGEST_FIELD,
    DIGEST_PLACEHOLDER,
    digest_without,
    onnx_card_entry,
    onnx_digest,
    onnx_entry_span,
    savedmodel_digest,
    tflite_card_span,
)
from keras_mamsf.utils import atomic_path, write_text_atomic

# The alignment the TFLite converter gives every buffer's data (schema.fbs: `data:[ubyte] (force_align: 16)`).
TFLITE_BUFFER_ALIGNMENT = 16


def embed_card(path, card):
    """Writes `card` into the artifact at `path` (a `.tflite` or `.onnx` file, a SavedModel folder), replacing a
    card it already has, with `content_sha256` set; returns the card as written."""
    path = os.fspath(path).rstrip(os.sep)
    if os.path.isdir(path):
        return _embed_savedmodel(path, card)
    if path.endswith(".tflite"):
        return _embed_tflite(path, card)
    if path.endswith(".onnx"):
        return _embed_onnx(path, card)
    raise ValueError(f"{path}: no model card for this kind of file (.tflite, .onnx or a SavedModel folder)")


def card_text(card):
    return json.dumps(card, indent=None, sort_keys=True, allow_nan=False)


def _embed_onnx(path, card):
    with open(path, "rb") as handle:
        data = handle.read()
    entry = onnx_entry_span(data, path)
    if entry is not None:  # an earlier card: out, so that the file holds one
        data = data[:entry[0]] + data[entry[1]:]
    card = dict(card, **{DIGEST_FIELD: onnx_digest(data, path)})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data + onnx_card_entry(card_text(card)))
    return card


def _embed_savedmodel(folder, card):
    card = dict(card, **{DIGEST_FIELD: savedmodel_digest(folder)})
    os.makedirs(os.path.join(folder, "assets"), exist_ok=True)
    write_text_atomic(os.path.join(folder, "assets", CARD_FILE), card_text(card) + "\n")
    return card


def _embed_tflite(path, card):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as handle:
        data = handle.read()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for entry in [entry for entry in (model.metadata or []) if _name(entry) == CARD_NAME]:
        model.buffers[entry.buffer].data = None  # an earlier card: out (its buffer stays, empty: indices hold)
        model.metadata.remove(entry)
    model.metadata = model.metadata or []
    text = card_text(dict(card, **{DIGEST_FIELD: DIGEST_PLACEHOLDER})).encode("utf-8")
    holder = schema.BufferT()
    holder.data = np.frombuffer(text, dtype=np.uint8)
    model.buffers.append(holder)
    model.metadata.append(schema.MetadataT())
    model.metadata[-1].name, model.metadata[-1].buffer = CARD_NAME, len(model.buffers) - 1
    aligned = _aligned_buffer_class()
    for buffer in model.buffers:
        buffer.__class__ = aligned
    builder = flatbuffers.Builder(len(data) + len(text) + 16 * len(model.buffers) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    packed = bytearray(builder.Output())
    start, end = tflite_card_span(packed, path)
    digest = digest_without(packed, (start, end))
    where = start + text.index(DIGEST_PLACEHOLDER.encode())
    packed[where:where + len(DIGEST_PLACEHOLDER)] = digest.encode()  # same length: nothing moves
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(packed)
    return dict(card, **{DIGEST_FIELD: digest})


def _name(entry):
    name = entry.name
    return name.decode() if isinstance(name, bytes) else name


def _aligned_buffer_class():
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBuffer(schema.BufferT):
        """A `BufferT` whose data vector is packed at `TFLITE_BUFFER_ALIGNMENT` (offset and size as they were)."""

        def Pack(self, builder):  # noqa: N802 - the generated API's name
            data = None
            if self.data is not None and len(self.data):
                values = np.ascontiguousarray(np.asarray(self.data, dtype=np.uint8)).tobytes()
                builder.StartVector(1, len(values), TFLITE_BUFFER_ALIGNMENT)
                builder.head = builder.head - len(values)
                builder.Bytes[builder.head:builder.head + len(values)] = values
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer
