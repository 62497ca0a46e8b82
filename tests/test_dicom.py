"""Bedside DICOMs (issue 14, acceptance 5): every transfer syntax CR/DX systems write decodes to
the pixels it encoded, MONOCHROME1 equals its MONOCHROME2 twin, a CR-like image lands in the
ChestX-ray14 intensity band, and files that are not one grayscale chest radiograph are refused."""

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from keras_mamsf.cli.main import main
from keras_mamsf.data.dicom import DicomError, equalize, read_dicom
from keras_mamsf.data.images import read_grayscale


def twelve_bit_image(rows=96, columns=80, seed=0):
    """A smooth 12-bit test radiograph with fine noise (so lossless codecs have work to do)."""
    y, x = np.mgrid[0:rows, 0:columns]
    noise = np.random.default_rng(seed).integers(0, 40, (rows, columns))
    return ((np.sin(x / 7.0) + np.cos(y / 5.0) + 2.0) * 1000 + noise).astype("uint16")


def write_dicom(path, pixels, transfer_syntax=ExplicitVRLittleEndian, encoded=None, bits_stored=12, **attributes):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if transfer_syntax == RLELossless else transfer_syntax
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 8 if bits_stored == 8 else 16
    dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = bits_stored, bits_stored - 1, 0
    for key, value in attributes.items():
        setattr(dataset, key, value)
    if encoded is not None:
        dataset.PixelData = encapsulate([encoded])
        dataset["PixelData"].VR = "OB"
    else:
        dataset.PixelData = pixels.astype("uint8" if bits_stored == 8 else "<u2").tobytes()
        if transfer_syntax == RLELossless:
            dataset.compress(RLELossless, encoding_plugin="pydicom")
    dataset.save_as(path, enforce_file_format=True)
    return str(path)


IMAGE = twelve_bit_image()
EIGHT_BIT = (IMAGE >> 4).astype("uint8")
# syntax: (encoder, the pixels it encodes, bits stored, the largest |error| allowed, in stored levels)
SYNTAXES = {
    "RLE Lossless": (None, IMAGE, 12, 0),
    "JPEG Lossless SV1": (lambda: imagecodecs.jpeg8_encode(IMAGE, lossless=True, bitspersample=12, predictor=1),
                          IMAGE, 12, 0),
    "JPEG-LS Lossless": (lambda: imagecodecs.jpegls_encode(IMAGE, level=0), IMAGE, 12, 0),
    "JPEG 2000 Lossless": (lambda: imagecodecs.jpeg2k_encode(IMAGE, level=0, reversible=True, codecformat="j2k",
                                                             bitspersample=12), IMAGE, 12, 0),
    # Lossy, within a stated error of the stored values: JPEG at quality 95 within 1% of the
    # stored range (measured max 3 of 252 levels for 8-bit, 8 of 4034 for 12-bit), JPEG 2000 at
    # 50 dB within 2% (measured max 46, mean 10.6 of 4034: the test image's noise is costly).
    "JPEG Baseline": (lambda: imagecodecs.jpeg8_encode(EIGHT_BIT, level=95), EIGHT_BIT, 8, 3),
    "JPEG Extended 12-bit": (lambda: imagecodecs.jpeg8_encode(IMAGE, level=95, bitspersample=12), IMAGE, 12, 41),
    "JPEG 2000": (lambda: imagecodecs.jpeg2k_encode(IMAGE, level=50, codecformat="j2k", bitspersample=12),
                  IMAGE, 12, 82),
}
UIDS = {"RLE Lossless": RLELossless, "JPEG Lossless SV1": JPEGLosslessSV1, "JPEG-LS Lossless": JPEGLSLossless,
        "JPEG 2000 Lossless": JPEG2000Lossless, "JPEG Baseline": JPEGBaseline8Bit,
        "JPEG Extended 12-bit": JPEGExtended12Bit, "JPEG 2000": JPEG2000}


@pytest.mark.parametrize("name", list(SYNTAXES))
def test_every_transfer_syntax_decodes_to_the_encoded_pixels(tmp_path, name):
    encoder, pixels, bits, max_error = SYNTAXES[name]
    path = write_dicom(tmp_path / "x.dcm", pixels, UIDS[name], None if encoder is None else encoder(), bits)
    dataset = pydicom.dcmread(path)
    assert dataset.file_meta.TransferSyntaxUID == UIDS[name]
    # minmax of the stored values: compare with the same stretch of the original pixels.
    decoded = read_dicom(path, window="minmax")[..., 0]
    expected = np.round((pixels - pixels.min()) / float(pixels.max() - pixels.min()) * 255.0)
    error = np.abs(decoded - expected).max()
    if max_error == 0:
        assert error == 0, name
    else:  # lossy: bounded, and the stored values themselves within max_error levels
        from keras_mamsf.data.dicom_codecs import register

        register()
        stored = pydicom.dcmread(path).pixel_array.astype(int)
        assert np.abs(stored - pixels.astype(int)).max() <= max_error, name
        assert error <= 255 * max_error / (pixels.max() - pixels.min()) + 1, name


def test_monochrome1_equals_its_monochrome2_twin(tmp_path):
    mono2 = write_dicom(tmp_path / "m2.dcm", IMAGE)
    mono1 = write_dicom(tmp_path / "m1.dcm", 4095 - IMAGE, PhotometricInterpretation="MONOCHROME1")
    for window in ("auto", "minmax"):
        np.testing.assert_array_equal(read_dicom(mono1, window=window), read_dicom(mono2, window=window))


def cr_like_image(rows=256, columns=256, seed=1):
    """A CR exposure as a wide-latitude plate records it: most of the field bright (shoulders,
    abdomen, collimated edges near the detector maximum), two darker lungs, 12-bit values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns] / np.array([rows, columns])[:, None, None]
    image = np.full((rows, columns), 3300.0)
    for cx in (0.32, 0.68):  # lungs: ellipses, darker towards their centre
        r = ((x - cx) / 0.14) ** 2 + ((y - 0.45) / 0.28) ** 2
        image = np.where(r < 1, 1500 + 900 * r, image)
    image[: rows // 10] = 4000  # collimation / shoulders
    image += rng.normal(0, 60, image.shape)
    return np.clip(image, 0, 4095).astype("uint16")


def nih_band(image):
    p2, median, p98 = np.percentile(image, [2, 50, 98])
    return p2 <= 32 and 105 <= median <= 180 and p98 >= 196, (p2, median, p98)


def test_a_cr_like_image_lands_in_the_chestxray14_band(tmp_path):
    path = write_dicom(tmp_path / "cr.dcm", cr_like_image(), WindowCenter=2048, WindowWidth=4096)
    file_window = read_dicom(path, window="file")
    inside, figures = nih_band(file_window)
    assert not inside and figures[1] > 200, figures  # the file's own window: washed out, as reported
    inside, figures = nih_band(read_dicom(path, window="minmax"))
    assert not inside, figures  # a stretch over the image's range is not enough either
    inside, figures = nih_band(read_grayscale(path))  # the default: auto
    assert inside, figures


def test_equalization_keeps_order_and_flat_images_flat():
    values = np.array([[5.0, 1.0], [3.0, 3.0]])
    result = equalize(values)
    assert result[0, 1] < result[1, 0] == result[1, 1] < result[0, 0]
    np.testing.assert_allclose(equalize(np.full((3, 3), 7.0)), 127.5)


@pytest.mark.parametrize("attributes, message", [
    ({"NumberOfFrames": 2}, "a multi-frame DICOM (2 frames), not one radiograph; pass --force to read its first frame"),
    ({"BodyPartExamined": "KNEE"}, "BodyPartExamined is KNEE, not a chest"),
    ({"ViewPosition": "CC"}, "ViewPosition is CC, not a chest projection"),
])
def test_files_that_are_not_one_chest_radiograph_are_refused_unless_forced(tmp_path, capsys, attributes, message):
    frames = attributes.get("NumberOfFrames", 1)
    pixels = np.concatenate([IMAGE] * frames) if frames > 1 else IMAGE
    path = write_dicom(tmp_path / "x.dcm", pixels.reshape(frames * IMAGE.shape[0], -1), **attributes)
    if frames > 1:  # the pixel data holds `frames` images of IMAGE's size
        dataset = pydicom.dcmread(path)
        dataset.Rows = IMAGE.shape[0]
        dataset.save_as(path)
    with pytest.raises(DicomError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_grayscale(path)
    assert read_grayscale(path, force=True).shape == (*IMAGE.shape, 1)
    assert main(["predict", "--model", str(tmp_path / "none.keras"), path]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_a_colour_dicom_is_refused_unless_forced(tmp_path):
    rgb = np.stack([EIGHT_BIT] * 3, axis=-1)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, bits_stored=8, SamplesPerPixel=3, PhotometricInterpretation="RGB",
                       PlanarConfiguration=0)
    with pytest.raises(DicomError, match=r"a colour image \(RGB, 3 samples per pixel\)"):
        read_grayscale(path)
    forced = read_grayscale(path, dicom_window="minmax", force=True)[..., 0]
    expected = np.round((EIGHT_BIT - EIGHT_BIT.min()) / float(EIGHT_BIT.max() - EIGHT_BIT.min()) * 255.0)
    np.testing.assert_array_equal(forced, expected)
