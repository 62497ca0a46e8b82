"""Decompression bombs are refused from the header, before decoding (issue 14, acceptance 6),
and a folder passed as an image says so."""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from keras_mamsf.cli.main import main
from keras_mamsf.data import images, nih
from keras_mamsf.data.synth import write_synthetic

LIMIT = images.MAX_IMAGE_PIXELS


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path, width, height):
    """A valid 8-bit grayscale PNG of `width` x `height` black pixels: a few hundred KB that
    decode to width * height bytes (and more in the decoder)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return str(path)


def write_jpeg_header(path, width, height):
    """SOI, an APP0 segment, then a baseline SOF0 declaring `width` x `height` (no scan data)."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    with open(path, "wb") as handle:
        handle.write(b"\xff\xd8" + app0 + sof0 + b"\xff\xd9")
    return str(path)


def write_dicom_header(path, rows, columns, frames=1):
    """A DICOM file declaring rows x columns (x frames) with a few bytes of pixel data."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.Rows, dataset.Columns, dataset.NumberOfFrames = rows, columns, frames
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = b"\0" * 64
    dataset.save_as(path, enforce_file_format=True)
    return str(path)


def test_declared_sizes_come_from_the_header(tmp_path):
    assert images.declared_size(write_png_bomb(tmp_path / "a.png", 300, 200)) == (300, 200, 1)
    assert images.declared_size(write_jpeg_header(tmp_path / "a.jpg", 640, 480)) == (640, 480, 1)
    assert images.declared_size(write_dicom_header(tmp_path / "a.dcm", 20, 30, 4)) == (30, 20, 4)


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_oversized_images_are_refused_before_decoding(tmp_path, kind):
    path = {"png": lambda: write_png_bomb(tmp_path / "bomb.png", 20000, 20000),
            "jpeg": lambda: write_jpeg_header(tmp_path / "bomb.jpg", 30000, 30000),
            "dicom": lambda: write_dicom_header(tmp_path / "bomb.dcm", 20000, 20000)}[kind]()
    side = 30000 if kind == "jpeg" else 20000
    with pytest.raises(images.ImageError) as error:
        images.read_grayscale(path)
    message = str(error.value)
    assert message == (f"{path}: declares {side} x {side} = {side * side:,} pixels, above the limit of {LIMIT:,} "
                       "(a decompression bomb, or a scan that needs MAMSF_MAX_IMAGE_PIXELS raised); not decoded")


def test_a_multi_frame_dicom_counts_every_frame(tmp_path):
    path = write_dicom_header(tmp_path / "frames.dcm", 3000, 3000, frames=12)
    with pytest.raises(images.ImageError, match=r"declares 3000 x 3000 x 12 frames = 108,000,000 pixels"):
        images.read_grayscale(path)


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    path = write_png_bomb(tmp_path / "small.png", 64, 64)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(images.ImageError, match="64 x 64 = 4,096 pixels, above the limit of 1,000"):
        images.read_grayscale(path)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", None)
    assert images.read_grayscale(path).shape == (64, 64, 1)


_PEAK = """
import resource, sys
from keras_mamsf.data.images import ImageError, load_image
try:
    load_image(sys.argv[1], 224, 3)
except ImageError as error:
    print("refused:", error)
print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_mb(path):
    result = subprocess.run([sys.executable, "-c", _PEAK, path], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("peak_kb")][0]
    return int(line.split()[1]) / 1024, result.stdout


def test_a_bomb_costs_no_more_memory_than_a_normal_image(tmp_path):
    import tensorflow as tf

    normal = tmp_path / "normal.png"
    normal.write_bytes(tf.io.encode_png(np.random.default_rng(0).integers(0, 255, (1024, 1024, 1), "uint8")).numpy())
    bomb = write_png_bomb(tmp_path / "bomb.png", 12000, 12000)  # 144 MB of pixels if decoded
    assert os.path.getsize(bomb) < 500_000
    normal_mb, _ = _peak_mb(str(normal))
    bomb_mb, output = _peak_mb(bomb)
    assert "refused:" in output and "not decoded" in output
    assert bomb_mb <= normal_mb + 100, (bomb_mb, normal_mb)


def test_predict_names_a_bomb_before_loading_the_model(tmp_path, capsys):
    bomb = write_png_bomb(tmp_path / "bomb.png", 20000, 20000)
    model = str(tmp_path / "model.keras")  # never read: the images are checked first, and none is left
    for argument in (str(tmp_path), bomb):  # a folder is walked: its one image is the bomb
        assert main(["predict", "--model", model, argument]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"mamsf predict: error: {bomb}: declares 20000 x 20000 = 400,000,000 pixels"), err
        assert "\n" not in err


def test_training_and_prepare_count_a_bomb_as_a_bad_image(tmp_path, capsys):
    root = tmp_path / "root"
    write_synthetic(str(root), images=12, size=64, seed=2)
    name = sorted(p.name for p in (root / "images").iterdir())[3]
    write_png_bomb(root / "images" / name, 20000, 20000)
    with pytest.raises(nih.DataError, match=f"{name}: declares 20000 x 20000 = 400,000,000 pixels, above the limit"):
        nih.read_nih(str(root))
    index = nih.read_nih(str(root), on_bad_image="skip")  # what train, evaluate and ablate read
    assert index.skipped == {"above the pixel limit": 1} and index.skipped_names == [name]
    assert main(["prepare", "--data", str(root), "--out", str(tmp_path / "shards"), "--size", "32",
                 "--on-bad-image", "skip", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == {"above the pixel limit": 1} and sum(summary["splits"].values()) == 11
