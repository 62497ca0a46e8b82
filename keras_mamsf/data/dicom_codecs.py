"""Compressed DICOM pixel data, decoded by imagecodecs through pydicom's plugin interface.

CR/DX systems and PACS store chest radiographs as JPEG Baseline (8-bit), JPEG Extended
(12-bit), JPEG Lossless, JPEG-LS, JPEG 2000 (lossless and lossy) or RLE. pydicom decodes
RLE itself; for the others it needs a plugin. We register one backed by imagecodecs:

- imagecodecs (BSD-3-Clause, binary wheels for Linux / macOS / Windows, maintained by
  Christoph Gohlke) bundles libjpeg-turbo 3 (8 and 12-bit, lossless), CharLS (JPEG-LS) and
  OpenJPEG: every syntax above from one package.
- The alternatives fall short: pylibjpeg's JPEG plugin (pylibjpeg-libjpeg) is GPL-3.0,
  awkward for a library that ships in devices; GDCM (python-gdcm) is refused by pydicom for
  12-bit JPEG Extended; Pillow decodes neither 12-bit JPEG nor JPEG-LS.

The plugin is added to pydicom's decoders once (`register()`, called by `images.read_dicom`)
and pydicom still tries its own plugins first, so an installed pylibjpeg or GDCM keeps working.
"""

import numpy as np
from pydicom import uid

PLUGIN = "keras_mamsf_imagecodecs"
# transfer syntax -> its imagecodecs decoder; libjpeg-turbo 3 (jpeg8_decode) reads all three JPEG
# processes DICOM uses: baseline, 12-bit extended, lossless.
SYNTAXES = {
    uid.JPEGBaseline8Bit: "jpeg8_decode",
    uid.JPEGExtended12Bit: "jpeg8_decode",
    uid.JPEGLossless: "jpeg8_decode",
    uid.JPEGLosslessSV1: "jpeg8_decode",
    uid.JPEGLSLossless: "jpegls_decode",
    uid.JPEGLSNearLossless: "jpegls_decode",
    uid.JPEG2000Lossless: "jpeg2k_decode",
    uid.JPEG2000: "jpeg2k_decode",
}
# What pydicom reports when imagecodecs is missing.
DECODER_DEPENDENCIES = {transfer_syntax: ("imagecodecs>=2024.1.1",) for transfer_syntax in SYNTAXES}
_REGISTERED = []


def is_available(transfer_syntax):
    """pydicom asks this before using the plugin for a transfer syntax."""
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return transfer_syntax in SYNTAXES


def decode_frame(src, runner):
    """One encoded frame -> its pixels as bytes, in the layout pydicom expects (native
    little-endian, `BitsAllocated` wide, colour by pixel)."""
    import imagecodecs

    pixels = getattr(imagecodecs, SYNTAXES[runner.transfer_syntax])(src)
    if runner.samples_per_pixel > 1:
        runner.set_option("planar_configuration", 0)
    dtype = f"<{'i' if runner.pixel_representation else 'u'}{max(1, runner.bits_allocated // 8)}"
    return np.ascontiguousarray(pixels).astype(dtype, copy=False).tobytes()


def register():
    """Add the plugin to pydicom's decoders (once per process)."""
    if _REGISTERED:
        return
    from pydicom.pixels.decoders.base import get_decoder

    for transfer_syntax in SYNTAXES:
        try:
            get_decoder(transfer_syntax).add_plugin(PLUGIN, (__name__, "decode_frame"))
        except ValueError:  # already added (a second import path of this module)
            pass
    _REGISTERED.append(True)

