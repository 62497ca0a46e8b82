"""The model card inside an exported file: what a device needs to turn the outputs into findings, carried by the
model file itself so that copying the file alone cannot lose it.

    card = read_card("model_int8.tflite")   # a dict, or None for a file exported before 0.3
    card["labels"], card["thresholds"]["values"], card["ood_guard"]["threshold"], card["output"]

Where each format keeps it (`keras_mamsf.export.card` writes it, after the artifact passed or failed its gate):

- `.tflite`: a `metadata` entry named `CARD_NAME` of the flatbuffer (the place TFLite keeps named buffers; the
  LiteRT interpreter ignores entries it does not know), holding the card as UTF-8 JSON;
- `.onnx`: the `metadata_props` entry with the key `CARD_NAME` (onnxruntime shows it as custom metadata);
- SavedModel: the file `assets/CARD_FILE`.

Every card records `content_sha256`: the SHA-256 of the artifact without its card (a TFLite or ONNX file's bytes
with the card's bytes left out; a SavedModel's files but the card, by relative path). `read_card` computes it
again and refuses a card that does not match (a card copied into another file, or either edited) in one line: a
wrong card would apply another model's thresholds at the bedside.

Reading needs no TensorFlow and no onnx package: the flatbuffer reader LiteRT ships (and `flatbuffers`), and for
ONNX the protobuf wire format of the model's top-level fields, read here (the card is one of them).
"""

import hashlib
import json
import os

CARD_NAME = "keras_mamsf.model_card"
CARD_FILE = "keras_mamsf_model_card.json"
SCHEMA = "keras-mamsf/model-card/1"
DIGEST_FIELD = "content_sha256"
# The TFLite card is packed with this in place of its digest, which is then written over it in place: the
# digest covers the file around the card's bytes, so it can only be known once the file is laid out.
DIGEST_PLACEHOLDER = "0" * 64


class CardError(ValueError):
    """A model card that cannot be read, or that does not belong to the file that carries it."""


def read_card(path):
    """The model card embedded in the exported artifact at `path` (`.tflite`, `.onnx`, a SavedModel folder), or
    None when it has none (an export before 0.3, a `.keras` file). Raises `CardError` (one line naming the file)
    when the card does not parse or does not match the file."""
    path = os.fspath(path).rstrip(os.sep)
    if os.path.isdir(path):
        text, digest = _savedmodel_card(path)
    elif path.endswith(".tflite"):
        text, digest = _located(path, tflite_card_span)
    elif path.endswith(".onnx"):
        text, digest = _located(path, onnx_entry_span)
    else:
        return None
    if text is None:
        return None
    try:
        card = json.loads(text)
        if not isinstance(card, dict) or card.get("schema") != SCHEMA:
            raise ValueError(f"schema {card.get('schema') if isinstance(card, dict) else None!r}, not {SCHEMA!r}")
    except ValueError as error:
        raise CardError(f"{path}: its model card cannot be read ({str(error).splitlines()[0]}); export it again") \
            from None
    if card.get(DIGEST_FIELD) != digest:
        raise CardError(f"{path}: refused: its model card does not belong to this file (the card says content "
                        f"SHA-256 {str(card.get(DIGEST_FIELD))[:12]}..., the file has {digest[:12]}...): the file "
                        "or its card was changed after export; export it again")
    return card


def _located(path, span_of):
    """`(card text, digest)` of a one-file artifact; `span_of(data, path)` gives `(start, end)` of what the digest
    leaves out and, when it is more than the JSON (ONNX: the whole metadata entry), the JSON's own span after."""
    if not os.path.isfile(path):  # the runner names a missing file
        return None, None
    with open(path, "rb") as handle:
        data = handle.read()
    span = span_of(data, path)
    if span is None:
        return None, None
    text_start, text_end = span[-2:]
    return data[text_start:text_end].decode("utf-8", errors="replace"), digest_without(data, span[:2])


def digest_without(data, span):
    """SHA-256 (hex) of `data` with the bytes `span` = (start, end) left out."""
    start, end = span
    return hashlib.sha256(bytes(data[:start]) + bytes(data[end:])).hexdigest()


def tflite_card_span(data, path="the file"):
    """`(start, end)` of the card's JSON bytes in a TFLite flatbuffer `data`, or None without a card."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        entries = [model.Metadata(i) for i in range(model.MetadataLength())]
        index = next((entry.Buffer() for entry in entries if entry.Name() == CARD_NAME.encode()), None)
        if index is None:
            return None
        buffer = model.Buffers(index)
        # the generated reader has no accessor for a vector's position; flatbuffers' Table gives it
        field = buffer._tab.Offset(4)
        start = buffer._tab.Vector(field)
        return start, start + buffer._tab.VectorLen(field)
    except Exception as error:  # noqa: BLE001 - a damaged flatbuffer fails anywhere in the generated reader
        raise CardError(f"{path}: not a readable TFLite model ({type(error).__name__}); is the file complete? "
                        "export it again") from None


# ONNX: ModelProto's field 14 is `repeated StringStringEntryProto metadata_props` (key = 1, value = 2).
_METADATA_PROPS = 14


def _varint(data, position):
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def protobuf_fields(data):
    """`[(field number, wire type, start, value start, end), ...]` of a serialized protobuf message's top level
    (the bytes `data[start:end]` are the whole field, tag included; `data[value start:end]` its payload)."""
    fields, position = [], 0
    while position < len(data):
        start = position
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _varint(data, position)
            value_start = start
        elif wire == 1:
            value_start, position = position, position + 8
        elif wire == 2:
            length, value_start = _varint(data, position)
            position = value_start + length
        elif wire == 5:
            value_start, position = position, position + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if position > len(data):
            raise ValueError("truncated field")
        fields.append((number, wire, start, value_start, position))
    return fields


def onnx_entry_span(data, path="the file"):
    """`(entry start, entry end, value start, value end)` of the card's metadata entry in an ONNX model, or None."""
    try:
        for number, wire, start, value_start, end in protobuf_fields(data):
            if number != _METADATA_PROPS or wire != 2:
                continue
            entry = dict((n, (vs, e)) for n, w, _, vs, e in protobuf_fields(data[value_start:end]) if w == 2)
            if 1 in entry and data[value_start + entry[1][0]:value_start + entry[1][1]] == CARD_NAME.encode():
                value = entry.get(2, (0, 0))
                return start, end, value_start + value[0], value_start + value[1]
    except ValueError as error:
        raise CardError(f"{path}: not a readable ONNX model ({error}); is the file complete? export it again") \
            from None
    return None


def onnx_card_entry(text):
    """The serialized `metadata_props` entry {key: CARD_NAME, value: text}, ready to append to a ModelProto (a
    protobuf message may repeat a field anywhere: appending adds the entry and changes no other byte)."""
    def length_delimited(number, payload):
        return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload

    inner = length_delimited(1, CARD_NAME.encode()) + length_delimited(2, text.encode("utf-8"))
    return length_delimited(_METADATA_PROPS, inner)


def _encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def onnx_digest(data, path="the file"):
    """SHA-256 of an ONNX model's bytes without its card's metadata entry."""
    entry = onnx_entry_span(data, path)
    return hashlib.sha256(data).hexdigest() if entry is None else digest_without(data, entry[:2])


def savedmodel_digest(folder):
    """SHA-256 over a SavedModel's files (relative path and content, in sorted order), its card left out."""
    digest = hashlib.sha256()
    for relative in sorted(_files(folder)):
        if relative == os.path.join("assets", CARD_FILE):
            continue
        digest.update(relative.replace(os.sep, "/").encode() + b"\0")
        with open(os.path.join(folder, relative), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _files(folder):
    for directory, _, names in os.walk(folder):
        for name in names:
            yield os.path.relpath(os.path.join(directory, name), folder)


def _savedmodel_card(folder):
    path = os.path.join(folder, "assets", CARD_FILE)
    if not os.path.isfile(path):
        return None, None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(), savedmodel_digest(folder)
