"""TFDS builder: ChestX-ray14 resized once into TFRecord shards (224, 256 or 512 px).

Manual download: point `manual_dir` at the NIH root (the layout `keras_mamsf.data.nih` reads).
Splits: "train", "val", "test" = `make_splits(method="official", val_fraction, seed)`: NIH's
test list, and a seeded fraction of the train_val *patients* as val. Each example holds the
image resized with the same antialiased area resize as the raw pipeline (rounded to uint8,
stored as raw bytes), the 14 labels, and the image name, patient id and view.

    mamsf prepare --data ROOT --size 256 --out DIR     # the usual way
"""

import numpy as np
import tensorflow_datasets as tfds

from keras_mamsf.labels import CHESTXRAY14_LABELS

SIZES = (224, 256, 512)


def size_config(size):
    return tfds.core.BuilderConfig(name=f"{size}px", description=f"images resized to {size}x{size}")


class Builder(tfds.core.GeneratorBasedBuilder):
    """ChestX-ray14 (NIH), pre-resized."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: official split with a patient-disjoint val part."}
    BUILDER_CONFIGS = [size_config(size) for size in SIZES]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download ChestX-ray14 from the NIH (Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt, "
        "images_001..012) and unpack it into one folder; pass that folder as manual_dir / --data."
    )

    def __init__(self, *, on_bad_image="error", val_fraction=0.1, split_seed=0, **kwargs):
        self._on_bad_image = on_bad_image
        self._val_fraction = val_fraction
        self._split_seed = split_seed
        super().__init__(**kwargs)

    @property
    def image_size(self):
        return int(self.builder_config.name.removesuffix("px"))

    def _info(self):
        size = self.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                # Raw uint8 bytes, not PNG: reading skips decoding altogether (the reason for
                # shards); 256 px is 64 KiB an image, about 7 GiB for all of ChestX-ray14.
                "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "labels": tfds.features.Tensor(shape=(len(CHESTXRAY14_LABELS),), dtype=np.float32),
                "image_index": tfds.features.Text(),
                "patient": tfds.features.Text(),
                "view": tfds.features.Text(),
            }),
            supervised_keys=("image", "labels"),
            homepage="https://nihcc.app.box.com/v/ChestXray-NIHCC",
            metadata=tfds.core.MetadataDict(labels=list(CHESTXRAY14_LABELS)),
        )

    def _split_generators(self, dl_manager):
        from keras_mamsf.data import nih, splits

        index = nih.read_nih(str(dl_manager.manual_dir), on_bad_image=self._on_bad_image)
        parts = splits.make_splits(index.records, index.lists, "official", self._val_fraction, self._split_seed)
        self.skipped = dict(index.skipped)
        # An empty split (a tiny dataset's val part) cannot be written: TFDS refuses it.
        return {name: self._generate_examples(records, name) for name, records in parts.items() if records}

    def _generate_examples(self, records, split=""):
        import sys
        import time

        import tensorflow as tf

        from keras_mamsf.data.nih import DataError
        from keras_mamsf.data.pipeline import decode_and_resize

        started, step = time.time(), max(500, len(records) // 10)
        for done, record in enumerate(records, 1):
            if done % step == 0 or done == len(records):  # one plain line per tenth (TFDS' bars are off)
                print(f"  {split}: {done}/{len(records)} images ({time.time() - started:.0f} s)", file=sys.stderr,
                      flush=True)
            try:
                image = decode_and_resize(record.path, self.image_size).numpy()
            except tf.errors.InvalidArgumentError:  # a PNG header over a broken body
                if self._on_bad_image == "error":
                    raise DataError(f"{record.path}: not a decodable PNG file; restore it or pass "
                                    "--on-bad-image=skip to leave it out and count it") from None
                self.skipped["not a PNG"] = self.skipped.get("not a PNG", 0) + 1
                continue
            yield record.image, {
                "image": np.clip(np.round(image), 0, 255).astype("uint8"),
                "labels": record.labels,
                "image_index": record.image,
                "patient": record.patient,
                "view": record.view,
            }
