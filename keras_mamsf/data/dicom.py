"""DICOM radiographs as the model saw ChestX-ray14: 8-bit grayscale, bone bright, NIH contrast.

    image = read_dicom("study.dcm")                  # float32 (H, W, 1), 0..255
    image = read_dicom("study.dcm", window="file")   # the file's own VOI LUT / window

Pixel data in any transfer syntax CR/DX systems write (uncompressed, RLE, JPEG Baseline /
Extended / Lossless, JPEG-LS, JPEG 2000; see `dicom_codecs`), then the modality LUT
(rescale slope / intercept), MONOCHROME1 inverted, and one of three windows:

- "auto" (default): histogram equalization of the modality values to 0..255, as MIMIC-CXR-JPG
  did. ChestX-ray14's PNGs (we measured 1,000) have dark lungs and a full range: 2nd percentile
  at most 32 in 90% of images (median 6), median 105..180 (10th..90th percentile), 98th
  percentile at least 196 in 90%. A CR file whose window spans the whole detector, with a
  mostly bright field (shoulders, abdomen), keeps a median above 200 under a plain window over
  its range or its robust percentiles; equalization puts any image into that band.
- "file": the file's VOI LUT or window (WindowCenter / WindowWidth), stretched to 0..255.
- "minmax": a linear stretch of the modality values from their minimum to their maximum.

Multi-frame files, colour images, files whose Modality is not a projection radiograph (CR, DX,
or RG; CT, MR, US, MG, ... are refused) and files whose BodyPartExamined or ViewPosition says they
are not a chest radiograph are refused in one line unless `force=True` (then: the first frame,
the mean of the colour channels, and the image as it is).
"""

import numpy as np

from keras_mamsf.data.image_error import ImageError

WINDOWS = ("auto", "file", "minmax")
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_TO_PELVIS", "TORSO")
# Projection radiography: computed (CR), digital (DX) and film digitized as radiographic imaging (RG).
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
CHEST_VIEWS = ("PA", "AP", "LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "AP SUPINE", "AP ERECT", "PA ERECT")


class DicomError(ImageError):
    """A DICOM file that cannot be used; one line naming the file and what to do."""


def read_dicom(path, window="auto", force=False):
    """`path` -> float32 (H, W, 1) in 0..255 (see the module docstring)."""
    from pydicom.pixels import apply_modality_lut

    from keras_mamsf.data.dicom_codecs import register

    if window not in WINDOWS:
        raise ValueError(f"DICOM window {window!r} is not one of {', '.join(WINDOWS)}")
    register()
    dataset = _read(path)
    if not force:
        _refuse_unless_chest_radiograph(path, dataset)
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - missing codecs, truncated data, ...
        raise DicomError(f"{path}: cannot decode the DICOM pixels ({_first_line(error)})") from None
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if int(dataset.get("SamplesPerPixel", 1)) > 1:
        pixels = pixels.mean(axis=-1)
    monochrome1 = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1"
    if window == "file":
        scaled = _file_window(dataset, pixels)
    else:
        values = apply_modality_lut(pixels, dataset).astype("float64")
        values = -values if monochrome1 else values  # MONOCHROME1: low values are bright
        scaled = equalize(values) if window == "auto" else _stretch(values, values.min(), values.max())
        monochrome1 = False
    if monochrome1:
        scaled = 255.0 - scaled
    return np.round(scaled).astype("float32")[..., None]


def check_dicom_header(path):
    """The refusals of `read_dicom` from the header alone (nothing decoded)."""
    _refuse_unless_chest_radiograph(path, _read(path, stop_before_pixels=True))


def _read(path, **options):
    """pydicom's dataset of `path`, or one line in our words (pydicom's own suggest its `force=True`,
    which is not `mamsf predict --force`)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, **options)
    except InvalidDicomError:
        raise DicomError(f"{path}: not a DICOM file (no DICOM header: no 'DICM' prefix, no file meta information); "
                         "export it from the PACS as DICOM Part 10, or convert it to PNG") from None
    except Exception as error:  # noqa: BLE001 - pydicom raises many types
        raise DicomError(f"{path}: not a readable DICOM file ({_first_line(error)})") from None


def equalize(values):
    """Histogram equalization to 0..255: each value maps to its mid-rank fraction (ties share
    one value, so a flat image stays flat at mid-grey)."""
    unique, inverse, counts = np.unique(values.ravel(), return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    fraction = (below + 0.5 * counts) / values.size
    return (fraction[inverse] * 255.0).reshape(values.shape)


def _stretch(values, low, high):
    return (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)


def _file_window(dataset, pixels):
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype("float64")
    low, high = _display_range(dataset, values)
    return np.clip(_stretch(values, low, high), 0.0, 255.0)


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


def _refuse_unless_chest_radiograph(path, dataset):
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError(f"{path}: a multi-frame DICOM ({frames} frames), not one radiograph; "
                         "pass --force to read its first frame")
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise DicomError(f"{path}: Modality is {modality}, not a radiograph (CR, DX); the model reads chest "
                         "X-rays (pass --force to read it anyway)")
    samples = int(dataset.get("SamplesPerPixel", 1))
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples > 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"{path}: a colour image ({photometric}, {samples} samples per pixel), not a grayscale "
                         "radiograph; pass --force to read it as the mean of its channels")
    body_part = str(dataset.get("BodyPartExamined", "") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise DicomError(f"{path}: BodyPartExamined is {body_part}, not a chest; the model reads chest radiographs "
                         "(pass --force to read it anyway)")
    view = str(dataset.get("ViewPosition", "") or "").strip().upper()
    if view and view not in CHEST_VIEWS:
        raise DicomError(f"{path}: ViewPosition is {view}, not a chest projection (PA, AP, lateral); "
                         "pass --force to read it anyway")


def _first_line(error):
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]
