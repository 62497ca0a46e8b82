"""Photographs that ship with a package (matplotlib's sample data), as 0..255 float32 RGB at a given size:
the inputs of the ImageNet parity test and of the script that wrote its reference logits."""

import os

import numpy as np

# matplotlib's sample_data: a portrait (Grace Hopper in uniform) and a wrapped present; the portrait's mirror too
_FILES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def imagenet_test_images(size):
    """`(names, images)`: images (n, size, size, 3) float32 in 0..255, resized with PIL's bilinear filter."""
    import matplotlib
    from PIL import Image

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    names, images = [], []
    for file in _FILES:
        with Image.open(os.path.join(folder, file)) as image:
            rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
        names.append(file)
        images.append(rgb)
    names.append(f"{_FILES[0]} (mirrored)")
    images.append(images[0][:, ::-1])
    return names, np.stack(images)
