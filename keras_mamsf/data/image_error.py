"""`ImageError`: the one error type of image reading (PNG, JPEG and DICOM alike)."""


class ImageError(ValueError):
    """An image file that cannot be read; one line naming the file and what to do."""
