"""Single image files for inference: PNG / JPEG and DICOM, preprocessed like training.

    image = load_image("study.dcm", size=224, channels=3)   # float32 (224, 224, 3), 0..255

PNG and JPEG are decoded by Pillow to 8-bit grayscale (16-bit PNGs scaled to 8 bits as TensorFlow
does: the high byte; JPEG's luma channel, as libjpeg gives it). DICOM files (any transfer syntax a
CR/DX system writes) are mapped to ChestX-ray14's appearance by `keras_mamsf.data.dicom`. Every
source then takes `area_resize_array`, NumPy's copy of the training pipeline's area resize
(`tests/test_pipeline.py` checks both on the same files: within one grey level). Images declaring
more than `MAX_IMAGE_PIXELS` pixels are refused from their header.

No TensorFlow, Keras, SciPy or scikit-learn here: this is what `mamsf predict` runs on a device.
"""

import os
import struct

import numpy as np

from keras_mamsf.data.image_error import ImageError

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Decompression bombs: a few hundred KB of PNG can declare 20000 x 20000 pixels (6 GB of
# memory to decode). Like Pillow's `Image.MAX_IMAGE_PIXELS` (whose default this is), images
# declaring more pixels are refused from their header, before any decoding. Set it (or the
# environment variable MAMSF_MAX_IMAGE_PIXELS) higher for larger detectors; None disables it.
MAX_IMAGE_PIXELS = int(os.environ.get("MAMSF_MAX_IMAGE_PIXELS", 89_478_485)) or None


def declared_size(path):
    """`(width, height, frames)` from the file's header without decoding it, or None when the
    header does not say (the decoder then reports the problem). PNG (IHDR), JPEG (SOF
    marker) and DICOM (Rows, Columns, NumberOfFrames)."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        head = handle.read(33)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height, 1
        if head[:2] == b"\xff\xd8":
            handle.seek(2)
            return _jpeg_size(handle)
    if is_dicom(path):
        import pydicom

        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - the full read names the problem
            return None
        if "Rows" not in dataset or "Columns" not in dataset:
            return None
        return int(dataset.Columns), int(dataset.Rows), int(dataset.get("NumberOfFrames", 1) or 1)
    return None


_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(handle):
    while True:
        byte = handle.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = handle.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if marker in _JPEG_FRAME_MARKERS:
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height, 1
        handle.seek(length - 2, os.SEEK_CUR)
        if handle.read(1) != b"\xff":
            return None


def pixel_limit_excess(path, limit=None):
    """"declares W x H = N pixels, above the limit of L" when `path`'s header declares more than
    `limit` pixels (default `MAX_IMAGE_PIXELS`), else None. Nothing is decoded."""
    limit = MAX_IMAGE_PIXELS if limit is None else limit
    size = declared_size(path) if limit else None
    if size is None:
        return None
    width, height, frames = size
    pixels = width * height * frames
    if pixels <= limit:
        return None
    frames_text = f" x {frames} frames" if frames > 1 else ""
    return f"declares {width} x {height}{frames_text} = {pixels:,} pixels, above the limit of {limit:,}"


def check_pixel_limit(path, limit=None):
    """Raise `ImageError` when `path` declares more than `limit` pixels (default
    `MAX_IMAGE_PIXELS`), before anything decodes it."""
    excess = pixel_limit_excess(path, limit)
    if excess:
        raise ImageError(f"{os.fspath(path)}: {excess} (a decompression bomb, or a scan that needs "
                         "MAMSF_MAX_IMAGE_PIXELS raised); not decoded")


def is_dicom(path):
    if os.fspath(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def check_image_file(path, force=False):
    """The checks before any decoding: an existing file (not a folder) within the pixel limit;
    for DICOM, unless `force`, one grayscale chest radiograph by its header."""
    path = os.fspath(path)
    if os.path.isdir(path):
        example = os.path.join(path, "*.png")
        raise ImageError(f"{path}: is a folder, not an image; pass the image files (e.g. {example})")
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    check_pixel_limit(path)
    if not force and is_dicom(path):
        from keras_mamsf.data.dicom import check_dicom_header

        check_dicom_header(path)
    return path


def read_grayscale(path, dicom_window="auto", force=False):
    """`path` -> float32 (H, W, 1) grayscale in 0..255, before resizing. DICOM: see
    `keras_mamsf.data.dicom.read_dicom` (`dicom_window`, `force`)."""
    path = check_image_file(path, force)
    if is_dicom(path):
        from keras_mamsf.data.dicom import read_dicom

        return read_dicom(path, window=dicom_window, force=force)
    if not path.lower().endswith(IMAGE_SUFFIXES):
        raise ImageError(f"{path}: not a PNG, JPEG or DICOM file; convert it to one of those")
    return _decode_grayscale(path)


def _decode_grayscale(path):
    """A PNG or JPEG file -> float32 (H, W, 1) 0..255, as TensorFlow's `decode_image(channels=1)`
    reads it for training."""
    from PIL import Image, UnidentifiedImageError

    kind = "JPEG" if path.lower().endswith((".jpg", ".jpeg")) else "PNG"
    try:
        with Image.open(path) as image:
            if image.format == "JPEG" and image.mode != "L":
                image.draft("L", image.size)  # the decoder's own luma, as libjpeg gives TensorFlow
            image.load()
            if image.mode.startswith("I"):  # 16-bit (or 32-bit) grayscale: TensorFlow keeps the high byte
                pixels = np.right_shift(np.asarray(image, dtype="uint32"), 8).clip(0, 255)
            else:
                pixels = np.asarray(image if image.mode == "L" else image.convert("L"))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a {kind} image (its content is not one); re-export or convert the "
                         "file") from None
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ImageError(f"{path}: cannot decode the {kind} image ({reason}); is the file complete?") from None
    return pixels.astype("float32")[..., None]


def _area_weights(size_in, size_out):
    """(size_out, size_in) weights of an area resize: each output pixel averages the input interval
    [i * scale, (i + 1) * scale), partial pixels by their covered fraction (TensorFlow's ResizeArea)."""
    scale = size_in / size_out
    starts = np.arange(size_out, dtype="float64")[:, None] * scale
    pixels = np.arange(size_in, dtype="float64")[None, :]
    covered = np.minimum(pixels + 1.0, starts + scale) - np.maximum(pixels, starts)
    return np.clip(covered, 0.0, None) / scale


def area_resize_array(image, size):
    """(H, W, C) -> float32 (size, size, C): the training pipeline's `area_resize` in NumPy."""
    image = np.asarray(image, dtype="float64")
    rows, columns = _area_weights(image.shape[0], size), _area_weights(image.shape[1], size)
    return np.einsum("ih,hwc,jw->ijc", rows, image, columns, optimize=True).astype("float32")


def load_image(path, size, channels=3, dicom_window="auto", force=False):
    """`path` -> float32 (size, size, channels) 0..255, resized exactly as in training."""
    image = area_resize_array(read_grayscale(path, dicom_window, force), size)
    return np.repeat(image, 3, axis=-1) if channels == 3 else image
