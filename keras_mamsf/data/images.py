"""Single image files for inference: PNG / JPEG and DICOM, preprocessed like training.

    image = load_image("study.dcm", size=224, channels=3)   # float32 (224, 224, 3), 0..255

PNG and JPEG are decoded to 8-bit grayscale (16-bit PNGs scaled to 8 bits). DICOM goes through
pydicom: the modality LUT (rescale slope / intercept), then the VOI LUT or window from the
file, then the result is stretched to 0..255 and MONOCHROME1 images are inverted, so bone is
bright as in ChestX-ray14. Every source then takes the training pipeline's area resize.
"""

import os

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageError(ValueError):
    """An image file that cannot be read; one line naming the file and what to do."""


def is_dicom(path):
    if os.fspath(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def read_grayscale(path):
    """`path` -> float32 (H, W, 1) grayscale in 0..255, before resizing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    if is_dicom(path):
        return _read_dicom(path)
    if not path.lower().endswith(IMAGE_SUFFIXES):
        raise ImageError(f"{path}: not a PNG, JPEG or DICOM file; convert it to one of those")
    import tensorflow as tf

    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=1, dtype=tf.uint8, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as error:
        raise ImageError(f"{path}: cannot decode the image ({str(error).splitlines()[0][:120]}); "
                         "is the file complete?") from None
    return tf.cast(image, tf.float32).numpy()


def _read_dicom(path):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types (InvalidDicomError, missing handlers, ...)
        raise ImageError(f"{path}: cannot read the DICOM pixels ({str(error).splitlines()[0][:160]})") from None
    if pixels.ndim != 2:
        raise ImageError(f"{path}: expected one grayscale frame, got pixel array of shape {pixels.shape}")
    values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype("float64")
    low, high = _display_range(dataset, values)
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        scaled = 255.0 - scaled  # MONOCHROME1: low values are bright
    return np.round(scaled).astype("float32")[..., None]


def _display_range(dataset, values):
    """The range the VOI transform maps into (as pydicom computes it), so that the file's own
    window decides the contrast; without a VOI LUT or window, the image's own min..max."""
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        if "ModalityLUTSequence" in dataset:
            low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
        elif int(dataset.get("PixelRepresentation", 0)) == 0:
            low, high = 0.0, float(2 ** int(dataset.BitsStored) - 1)
        else:
            low, high = -float(2 ** (int(dataset.BitsStored) - 1)), float(2 ** (int(dataset.BitsStored) - 1) - 1)
        slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
        if slope is not None and intercept is not None and "ModalityLUTSequence" not in dataset:
            low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
        return low, high
    return float(values.min()), float(values.max())


def load_image(path, size, channels=3):
    """`path` -> float32 (size, size, channels) 0..255, resized exactly as in training."""
    from keras_mamsf.data.pipeline import area_resize

    image = area_resize(read_grayscale(path), size).numpy()
    return np.repeat(image, 3, axis=-1) if channels == 3 else image
