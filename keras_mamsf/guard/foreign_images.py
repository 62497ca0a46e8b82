"""Images that are not chest films, from files that ship with Python packages: what the guard must refuse.

    names, kinds, images = foreign_images(128, channels=1)

Five kinds, read as `mamsf predict` reads a file (`data.images.load_image`; DICOM past its Modality check,
as with `--force`):

- photographs: scikit-image's, scikit-learn's and matplotlib's sample photographs, and ten of scikit-image's
  face thumbnails (`lfw_subset.npy`);
- microscopy: scikit-image's `cell.png` and `ihc.png`;
- fundus: scikit-image's `retina.jpg` (a retinal photograph) and `microaneurysms.png` (a crop of one);
- documents and graphics: scanned text, logos, a chessboard, a colour chart, a silhouette, the Shepp-Logan
  phantom, matplotlib's drawings;
- CT, MR, NM and US slices: pydicom's test files of those modalities (one of each distinct image: the same
  slice in several encodings counts once) and matplotlib's MR slice `s1045.ima`.

Needs scikit-image, scikit-learn, matplotlib and pydicom installed (the `[test]` extra); nothing is downloaded.
A file that does not decode here (a DICOM encoding without its plugin) is left out and named in `skipped`.
"""

import gzip
import hashlib
import importlib.util
import os

import numpy as np

PHOTOGRAPHS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "moon.png", "rocket.jpg",
               "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "grass.png", "gravel.png",
               "brick.png", "clock_motion.png")
MICROSCOPY = ("cell.png", "ihc.png")
FUNDUS = ("retina.jpg", "microaneurysms.png")
GRAPHICS = ("page.png", "text.png", "logo.png", "chessboard_GRAY.png", "horse.png", "color.png", "phantom.png")
FACES = 10
SLICE_MODALITIES = ("CT", "MR", "NM", "US")


def _package_folder(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the foreign-image set reads {package}'s sample files: pip install -e \".[test]\"")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def foreign_files():
    """`[(name, kind, path)]` of the set's image files (the DICOM slices not yet de-duplicated)."""
    import pydicom
    import pydicom.data

    skimage = _package_folder("skimage", "data")
    sklearn = _package_folder("sklearn", "datasets", "images")
    matplotlib = _package_folder("matplotlib", "mpl-data", "sample_data")
    files = [(name, "photograph", os.path.join(skimage, name)) for name in PHOTOGRAPHS]
    files += [(name, "photograph", os.path.join(sklearn, name)) for name in ("china.jpg", "flower.jpg")]
    files += [("grace_hopper.jpg", "photograph", os.path.join(matplotlib, "grace_hopper.jpg"))]
    files += [(name, "microscopy", os.path.join(skimage, name)) for name in MICROSCOPY]
    files += [(name, "fundus", os.path.join(skimage, name)) for name in FUNDUS]
    files += [(name, "document or graphic", os.path.join(skimage, name)) for name in GRAPHICS]
    files += [(name, "document or graphic", os.path.join(matplotlib, name))
              for name in ("logo2.png", "Minduka_Present_Blue_Pack.png")]
    for path in sorted(pydicom.data.get_testdata_files("*")):
        try:
            modality = str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", ""))
        except Exception:  # noqa: BLE001 - pydicom's test files include broken ones on purpose
            continue
        if modality in SLICE_MODALITIES:
            files.append((os.path.basename(path), f"{modality} slice", path))
    return files


def foreign_images(size, channels=1):
    """`(names, kinds, images, skipped)`: images float32 (n, size, size, channels) 0..255; `kinds` one of
    "photograph", "microscopy", "fundus", "document or graphic", "CT slice", "MR slice", "NM slice",
    "US slice"; `skipped`: "name (why)" of files that did not decode."""
    import warnings

    from keras_mamsf.data.images import area_resize_array, load_image

    names, kinds, images, skipped, seen = [], [], [], [], set()

    def add(name, kind, image):
        digest = hashlib.sha256(np.round(image).astype("uint8").tobytes()).hexdigest()
        if digest in seen:  # the same slice in another encoding
            return
        seen.add(digest)
        names.append(name)
        kinds.append(kind)
        images.append(image)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's test files are odd on purpose
        for name, kind, path in foreign_files():
            try:
                add(name, kind, load_image(path, size, channels, force=True))
            except Exception as error:  # noqa: BLE001 - counted and named, never silently dropped
                reason = str(error).splitlines()[0].replace(f"{path}: ", "") if str(error) else type(error).__name__
                skipped.append(f"{name} ({reason[:100]})")
    faces = np.load(_package_folder("skimage", "data", "lfw_subset.npy"))
    scale = 255.0 if faces.max() <= 1.0 else 1.0
    for index in range(0, 10 * FACES, 10):
        face = area_resize_array((faces[index] * scale).astype("float32")[..., None], size)
        add(f"lfw_subset.npy[{index}]", "photograph", np.repeat(face, channels, axis=-1))
    with gzip.open(_package_folder("matplotlib", "mpl-data", "sample_data", "s1045.ima.gz")) as handle:
        slice_ = np.frombuffer(handle.read(), "<u2").reshape(256, 256).astype("float32")
    slice_ = area_resize_array((slice_ / slice_.max() * 255.0)[..., None], size)
    add("s1045.ima.gz", "MR slice", np.repeat(slice_, channels, axis=-1))
    return names, kinds, np.stack(images).astype("float32"), skipped


def kind_group(kind):
    """The five kinds the acceptance counts ("CT/MR/NM/US slice" for every slice modality)."""
    return "CT/MR/NM/US slice" if kind.endswith(" slice") else kind
