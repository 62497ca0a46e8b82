"""Ordinary differences between hospitals' films, applied to images at the model's input size.

    varied = ordinary_variations(train_images, seed=0)      # each image one random ordinary difference
    jpeg30 = benign_variation(test_images, "JPEG 30")        # one named difference at a fixed strength

The guard (`keras_mamsf.guard.fit_guard`) fits its two Gaussians on the training images *and* on a copy of
them with one random ordinary difference each, and sets its threshold on the validation images and such a
copy of them. Why: fitted on one archive's films only, a Mahalanobis distance treats the smallest systematic
change as foreign (measured on ChestX-ray14 at 128 px with the ImageNet-start model: fitted on the films alone,
the backbone-feature score flagged 62% of the test films saved as JPEG quality 30 and 31% with noise of sd 3;
docs/safety.md). Telling it which differences are ordinary is what lets it be strict about everything else.

What counts as ordinary (`ORDINARY`) is a list, not a law: a difference outside it (another detector's
processing, a burned-in annotation, a lateral view) is judged by the Gaussians as anything else is.
`BENIGN_VARIATIONS` are fixed strengths inside those ranges, the ones the documentation's false-alarm table
is measured on.

Every function takes float32 NHWC images 0..255 (1 or 3 equal channels) and returns the same shape.
"""

import io

import numpy as np

ORDINARY = ("JPEG quality 25-95; Gaussian noise sd 0.5-4; gamma 0.75-1.33; brightness x0.88-1.12; contrast "
            "x0.8-1.0 about the mean; a border crop of 1-4% a side, resized back; resolution 50-88% and back")

BENIGN_VARIATIONS = ("JPEG 75", "JPEG 30", "gamma 0.8", "gamma 1.25", "brightness -10%", "brightness +10%",
                     "contrast 0.85", "crop 2%", "noise sd 3", "resolution 75%")


def _grey(image):
    return np.asarray(image, dtype="float32").mean(axis=-1)


def _jpeg(grey, quality):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(grey, 0, 255).round().astype("uint8")).save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer), dtype="float32")


def _crop(grey, fraction):
    from keras_mamsf.data.images import area_resize_array

    size = grey.shape[0]
    cut = max(1, int(round(fraction * size)))
    return area_resize_array(grey[cut:size - cut, cut:size - cut, None], size)[..., 0]


def _resolution(grey, fraction):
    from PIL import Image

    size = grey.shape[0]
    small = max(8, int(round(fraction * size)))
    image = Image.fromarray(grey.astype("float32"), mode="F")
    return np.asarray(image.resize((small, small), Image.BOX).resize((size, size), Image.BILINEAR), dtype="float32")


def _contrast(grey, factor):
    mean = grey.mean()
    return mean + factor * (grey - mean)


def _apply(grey, kind, strength, rng):
    if kind == "jpeg":
        varied = _jpeg(grey, strength)
    elif kind == "noise":
        varied = grey + rng.normal(0.0, strength, grey.shape)
    elif kind == "gamma":
        varied = 255.0 * (np.clip(grey, 0, 255) / 255.0) ** strength
    elif kind == "brightness":
        varied = grey * strength
    elif kind == "contrast":
        varied = _contrast(grey, strength)
    elif kind == "crop":
        varied = _crop(grey, strength)
    else:
        varied = _resolution(grey, strength)
    return np.clip(varied, 0, 255).astype("float32")


_RANGES = {"jpeg": (25, 96), "noise": (0.5, 4.0), "gamma": (0.75, 1.33), "brightness": (0.88, 1.12),
           "contrast": (0.8, 1.0), "crop": (0.01, 0.04), "resolution": (0.5, 0.88)}
_NAMED = {"JPEG 75": ("jpeg", 75), "JPEG 30": ("jpeg", 30), "gamma 0.8": ("gamma", 0.8),
          "gamma 1.25": ("gamma", 1.25), "brightness -10%": ("brightness", 0.9),
          "brightness +10%": ("brightness", 1.1), "contrast 0.85": ("contrast", 0.85), "crop 2%": ("crop", 0.02),
          "noise sd 3": ("noise", 3.0), "resolution 75%": ("resolution", 0.75)}


def _each(images, function):
    """`function(grey image)` of every image, tiled back to the images' channels."""
    images = np.asarray(images, dtype="float32")
    if not len(images):
        return images
    varied = np.stack([function(_grey(image)) for image in images])
    return np.repeat(varied[..., None], images.shape[-1], axis=-1)


def ordinary_variations(images, seed=0):
    """`images` with one ordinary difference each (`ORDINARY`), its kind and strength drawn at random."""
    rng = np.random.default_rng(seed)
    kinds = list(_RANGES)

    def vary(grey):
        kind = kinds[rng.integers(len(kinds))]
        low, high = _RANGES[kind]
        strength = int(rng.integers(low, high)) if kind == "jpeg" else float(rng.uniform(low, high))
        return _apply(grey, kind, strength, rng)

    return _each(images, vary)


def benign_variation(images, name, seed=0):
    """`images` with the named difference of `BENIGN_VARIATIONS` at its fixed strength."""
    if name not in _NAMED:
        raise ValueError(f"unknown variation {name!r}: choose one of {', '.join(BENIGN_VARIATIONS)}")
    kind, strength = _NAMED[name]
    rng = np.random.default_rng(seed)
    return _each(images, lambda grey: _apply(grey, kind, strength, rng))
