"""Screening images with a model file and its model card: the code `mamsf predict` runs, and the device
example. NumPy and the model's runtime only (LiteRT, onnxruntime; TensorFlow for a SavedModel, Keras for `.keras`).

    model = Bedside("exports/model_int8.tflite", threads=2)     # the runner and the card inside the file
    image = load_image("chest.png", model.size, model.channels)  # keras_mamsf.data.images
    (result,) = model.screen(image[None])
    result["withheld"] or result["findings"]

What a result says (`Bedside.screen`):
- `probs`: each class's probability, made as the card says (through its `output`; flip-averaged with
  `test_time_flip`, as the thresholds were chosen);
- `findings`: the classes at or above their threshold; a `null` threshold is "not screened" (the guaranteed rule
  had too few validation positives): never a finding and never reported negative (`not_screened`);
- `in_distribution`, `ood_score`, `ood_threshold`: the OOD guard's verdict (None without a guard); an image above
  the threshold gets no findings, and `withheld` says why in one line, unless `show_ood`.
"""

import os

from keras_mamsf.inference.card import CardError
from keras_mamsf.inference.formats import KERAS, artifact_format, load_runner
from keras_mamsf.inference.model_card import default_card, find_card, read_thresholds
from keras_mamsf.inference.runners import predict_scores, square_input

NO_CARD = "no model card: no thresholds, no OOD guard (--no-card)"


class NoCardError(ValueError):
    """An exported file with no model card inside it and no manifest.json beside it."""


class Bedside:
    """A model file ready to screen images.

    Args:
        model_path: a `.tflite` or `.onnx` file, a SavedModel folder, or a `.keras` file.
        threads: CPU threads for LiteRT / onnxruntime.
        thresholds: a JSON file of thresholds (`{label: t or null}`, or a run's thresholds.json) used instead of
            the card's.
        no_card: run an exported file that has no model card and no manifest (an export before 0.3): scores
            only, with no thresholds (unless `thresholds`) and no OOD guard, and every result says so. Without it
            such a file is refused (`NoCardError`): its findings would have no thresholds and no safety net.
        card: the card, when already read (`inference.card.read_card`); else `find_card` looks for it.
        show_ood: keep the findings of images the guard flags (still marked `withheld`).

    Example:

    ```python
    model = Bedside("exports/model_int8.tflite", threads=2)
    (result,) = model.screen(load_image("chest.png", model.size, model.channels)[None])
    print(result["withheld"] or result["findings"])
    ```
    """

    def __init__(self, model_path, threads=None, thresholds=None, no_card=False, card=None, show_ood=False):
        self.model_path = os.fspath(model_path)
        fmt = artifact_format(self.model_path)  # a missing (or set-aside) model file says so first
        if card is not None:
            where = "the card given"
        else:
            card, where = find_card(self.model_path)
        # the runner first: a file that is no model at all says so before anything is said about its card
        self.runner = load_runner(self.model_path, num_threads=threads)
        self.size, self.channels = square_input(self.runner, self.model_path)
        self.no_card = where is None and fmt is not KERAS
        if self.no_card and not no_card:
            raise NoCardError(
                f"{self.model_path}: no model card inside the file and no manifest.json beside it (an export "
                "before 0.3?): no thresholds and no OOD guard to apply, so no findings; export it again, put its "
                "manifest.json beside it, or pass --no-card for scores only")
        if self.no_card:
            card = default_card({label: None for label in default_card()["labels"]}, NO_CARD)
        self.card, self.card_source = card, where
        self.labels = list(card["labels"])
        self.thresholds, self.thresholds_source = dict(card["thresholds"]["values"]), card["thresholds"]["source"]
        if thresholds is not None:
            self.thresholds, self.thresholds_source = read_thresholds(thresholds, self.labels)
        self.ood_limit = None if self.no_card else (card.get("ood_guard") or {}).get("threshold")
        self.output = card.get("output", "probs")
        self.test_time_flip = bool(card.get("test_time_flip", False))
        self.show_ood = show_ood

    def screen(self, images):
        """One result per image (float32 NHWC 0..255 at the model's size): see the module's docstring."""
        probs, outputs = predict_scores(self.runner, images, self.output, test_time_flip=self.test_time_flip)
        if probs.shape[1] != len(self.labels):
            raise CardError(f"{self.model_path}: {probs.shape[1]} outputs for the card's {len(self.labels)} labels")
        limit = self.ood_limit if "ood_score" in outputs else None
        return [self._result(row, None if limit is None else float(outputs["ood_score"][k]), limit)
                for k, row in enumerate(probs)]

    def _result(self, row, score, limit):
        scores = {label: float(p) for label, p in zip(self.labels, row)}
        findings = [label for label in self.labels
                    if self.thresholds[label] is not None and scores[label] >= self.thresholds[label]]
        typical = None if limit is None else bool(score <= limit)
        withheld = None
        if typical is False:
            withheld = (f"out of distribution: ood_score {score:.2f} > {limit:.2f} (the image does not look like the "
                        "training X-rays); findings withheld" + (", shown by --show-ood" if self.show_ood else ""))
        return {"probs": scores, "findings": findings if typical is not False or self.show_ood else [],
                "not_screened": [label for label in self.labels if self.thresholds[label] is None],
                "in_distribution": typical, "ood_score": score, "ood_threshold": limit, "withheld": withheld,
                "no_card": NO_CARD if self.no_card else None}
