"""`TrainConfig`: every setting of a `mamsf train` run, its defaults, validation and TOML form.

    config = TrainConfig.from_file("configs/chestxray14.toml").with_overrides(["epochs=5", "anchor=none"])
    config.write("runs/a/config.toml")           # passing it back with --config repeats the run

The key names `backbone`, `image_size`, `anchor`, `anchor_decay`, `anchor_layers`, `loss`, `epochs`,
`batch_size`, `learning_rate`, `seed`, `weights`, `dtype_policy` are a contract (scripts and
`mamsf ablate` use them). A config file is flat TOML (`key = value`, comments allowed); `"none"`
stands for "no value" where a key allows it. Every key and value is checked before anything runs:
a misspelt key names the closest valid ones, a bad value names the allowed values or range.
"""

import dataclasses
import difflib
import inspect
import json
import os

from keras_mamsf.anchor.modes import MODES
from keras_mamsf.losses import DEFAULT as DEFAULT_LOSS
from keras_mamsf.losses import LOSSES
from keras_mamsf.losses.weighted_bce import WEIGHTING_SCHEMES
from keras_mamsf.models.mamsf_classifier import MAMSFClassifier
from keras_mamsf.stats.thresholds import DEFAULT_RULE, DELTA, MIN_SENSITIVITY, RULES

ANCHORS = tuple(MODES)
# The model's constructor arguments: every one is a config key of the same name, or stands in
# `DERIVED_MODEL_ARGUMENTS` (checked when this module loads, so a new argument cannot be left out).
MODEL_PARAMETERS = {name: parameter
                    for name, parameter in inspect.signature(MAMSFClassifier.__init__).parameters.items()
                    if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD}
DERIVED_MODEL_ARGUMENTS = {
    "input_shape": "image_size and channels (square images)",
    "num_classes": "the training labels (14 for ChestX-ray14)",
    "dtype": "dtype_policy (\"auto\" resolved by the trainer for the machine)",
    "name": "not set: the model keeps its default name (mamsf_<backbone>_<anchor>)",
}
SPLITS = ("official", "patient")
VIEWS = ("all", "PA", "AP")
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "auto")


class ConfigError(ValueError):
    """A bad key or value in a config file or a --set; one line."""


def _model_default(name):
    """The model's default for `name`, in the config's spelling ("none" and () for None)."""
    default = MODEL_PARAMETERS[name].default
    if default is None:
        return () if name == "anchor_layers" else "none"
    return tuple(default) if isinstance(default, (list, tuple)) else default


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (docs/training.md has a table of every key's meaning)."""

    # model: MAMSFClassifier's arguments, with its defaults (see MODEL_PARAMETERS)
    backbone: str = _model_default("backbone")
    image_size: int = 224
    channels: int = 1
    # "none", "imagenet" (efficientnet_lite0: offline from the [pretrained] package; B0-B7, V2: Keras' download)
    # or a local .h5 / .weights.h5 file
    weights: str = _model_default("weights")
    anchor: str = _model_default("anchor")
    anchor_decay: float = _model_default("anchor_decay")
    anchor_warmup: bool = _model_default("anchor_warmup")
    anchor_warmup_gamma: float = _model_default("anchor_warmup_gamma")
    anchor_warmup_power: float = _model_default("anchor_warmup_power")
    anchor_layers: tuple = _model_default("anchor_layers")  # stage names or layer-name prefixes; () = final block
    fusion_filters: int = _model_default("fusion_filters")
    fusion_kernels: tuple = _model_default("fusion_kernels")
    fusion_activation: str = _model_default("fusion_activation")
    dropout: float = _model_default("dropout")
    dtype_policy: str = "float32"  # "auto": mixed_bfloat16 on a GPU, float32 otherwise
    # loss
    loss: str = DEFAULT_LOSS
    class_weighting: str = "balanced"  # weighted_bce's scheme
    asl_gamma_neg: float = 4.0
    asl_clip: float = 0.05
    focal_gamma: float = 2.0
    # data
    split: str = "official"
    val_fraction: float = 0.1
    split_seed: int = 0
    view: str = "all"
    class_aware: bool = False
    augment: bool = True
    augment_flip: bool = True  # the left-right flip among the augmentations (with augment)
    augment_strength: float = 1.0  # multiplies the augmentation's magnitudes (rotation, zoom, ...; not the flip)
    # optimizer and schedule: AdamW, linear warmup then cosine decay to 0
    learning_rate: float = 1e-3
    # the backbone's learning rate as a fraction of learning_rate (discriminative fine-tuning of pretrained
    # weights; keras_mamsf.optimizers.DiscriminativeAdamW); 1.0: one rate for the whole network
    backbone_lr_scale: float = 1.0
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    # an exponential moving average of the whole model's weights (Keras' optimizer `use_ema`), 0: off; with
    # it, validation, best.keras and final.keras use the average (training.callbacks.WithWeightEMA)
    weight_ema: float = 0.0
    # evaluation at the end (on the best checkpoint, test split)
    n_boot: int = 2000
    # every score (val, so the thresholds; test) the mean over each image and its left-right mirror (two
    # invocations; inference.runners.predict_scores); config.toml beside best.keras carries it to evaluate,
    # predict and export (the manifest's test_time_flip), which score the same way
    test_time_flip: bool = False
    # the operating thresholds in thresholds.json, chosen on the val split ("guaranteed": the Clopper-Pearson
    # lower bound of sensitivity >= min_sensitivity with probability 1 - threshold_delta; stats.thresholds)
    threshold_rule: str = DEFAULT_RULE
    min_sensitivity: float = MIN_SENSITIVITY
    threshold_delta: float = DELTA
    # the OOD guard (ood_guard.npz, in every export as ood_score): its false-alarm rate on the val split
    ood_alpha: float = 0.01
    # BatchNorm statistics re-estimated from this many training images when training ends (0: off;
    # training.precise_bn says when a short run needs it)
    precise_bn_images: int = 0
    # per-class feature drift of both blocks each epoch (DriftMonitor: drift.json, drift.png)
    drift_monitor: bool = False
    drift_per_class: int = 32  # probe images per class, drawn from the validation split

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check(field.name, getattr(self, field.name))

    @classmethod
    def keys(cls):
        return [field.name for field in dataclasses.fields(cls)]

    def with_overrides(self, assignments, where="--set"):
        """A copy with `key=value` strings applied (values parsed as TOML, bare words as strings)."""
        changes = {}
        for assignment in assignments:
            key, separator, text = assignment.partition("=")
            key = key.strip()
            if not separator:
                raise ConfigError(f"{where} {assignment!r}: expected key=value")
            changes[_known(key, where)] = parse_value(key, text.strip(), where)
        return self.replace(**changes)

    def replace(self, **changes):
        return dataclasses.replace(self, **{key: _coerce(key, value) for key, value in changes.items()})

    @classmethod
    def from_file(cls, path):
        """The config in a TOML file; unknown keys and bad values fail with the file's name."""
        import tomllib

        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not valid TOML ({str(error).splitlines()[0]})") from None
        flat = {}
        for key, value in data.items():  # [model] / [data] ... tables are allowed and flattened
            flat.update(value if isinstance(value, dict) else {key: value})
        try:
            return cls().replace(**{_known(key, path): value for key, value in flat.items()})
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None

    def to_dict(self):
        return {key: list(value) if isinstance(value, tuple) else value for key,
                value in dataclasses.asdict(self).items()}

    def to_toml(self, notes=()):
        """The config as TOML; `notes` become comment lines under the header (facts about the run, not keys)."""
        lines = ["# keras-mamsf training config (mamsf train --config THIS_FILE repeats the run)"]
        lines += [f"# {note}" for note in notes]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars and lists are valid TOML here
        return "\n".join(lines) + "\n"

    def write(self, path, notes=()):
        from keras_mamsf.utils import write_text_atomic

        write_text_atomic(path, self.to_toml(notes))
        return os.fspath(path)

    def augmentation_arguments(self):
        """The arguments of `data.pipeline.augmentation_settings` / `augmentation_layers` (but the seed) that
        this config's augmentation stands for; None when `augment` is off. The one mapping of the keys, for the
        trainer's layers and the ablation protocol that states them."""
        return {"strength": self.augment_strength, "flip": self.augment_flip} if self.augment else None

    def model_arguments(self):
        """`MAMSFClassifier`'s arguments this config stands for (all but `num_classes`, `dtype`, `name`:
        the trainer's), read off its signature, so every argument is a key."""
        arguments = {"input_shape": (self.image_size, self.image_size, self.channels)}
        for name, parameter in MODEL_PARAMETERS.items():
            if name not in DERIVED_MODEL_ARGUMENTS:
                value = getattr(self, name)
                none = value == "none" or (parameter.default is None and value == ())
                arguments[name] = None if none else tuple(value) if isinstance(value, tuple) else value
        return arguments


_left_out = sorted(set(MODEL_PARAMETERS) - set(DERIVED_MODEL_ARGUMENTS) - set(TrainConfig.keys()))
if _left_out:
    raise ImportError(f"TrainConfig has no key for MAMSFClassifier argument(s) {_left_out}: add them")


def _known(key, where):
    keys = TrainConfig.keys()
    if key in keys:
        return key
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; valid keys: {', '.join(keys)}"
    raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def parse_value(key, text, where="--set"):
    """A --set value: TOML/JSON syntax (numbers, true/false, [lists], "strings"), or a bare word."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


_CHOICES = {"anchor": ANCHORS, "loss": LOSSES, "class_weighting": WEIGHTING_SCHEMES, "split": SPLITS,
            "view": VIEWS, "dtype_policy": DTYPE_POLICIES, "channels": (1, 3), "threshold_rule": RULES}
# (low, high, low inclusive, high inclusive)
_RANGES = {"image_size": (32, 2048, True, True), "anchor_decay": (0.0, 1.0, True, False),
           "anchor_warmup_gamma": (0.0, 1e12, False, True), "anchor_warmup_power": (0.0, 100.0, False, True),
           "fusion_filters": (1, 4096, True, True), "dropout": (0.0, 1.0, True, False),
           "asl_gamma_neg": (0.0, 20.0, True, True), "asl_clip": (0.0, 1.0, True, False),
           "focal_gamma": (0.0, 20.0, True, True), "val_fraction": (0.0, 1.0, True, False),
           "learning_rate": (0.0, 10.0, False, True), "backbone_lr_scale": (0.0, 1.0, True, True),
           "weight_decay": (0.0, 1.0, True, True),
           "warmup_epochs": (0.0, 1000.0, True, True), "epochs": (1, 100000, True, True),
           "batch_size": (1, 65536, True, True), "n_boot": (0, 1000000, True, True),
           "drift_per_class": (1, 100000, True, True), "precise_bn_images": (0, 1000000, True, True),
           "min_sensitivity": (0.0, 1.0, False, True), "threshold_delta": (0.0, 1.0, False, False),
           "ood_alpha": (0.0, 1.0, False, False), "weight_ema": (0.0, 1.0, True, False),
           "augment_strength": (0.0, 5.0, True, True)}


def _coerce(key, value):
    """The value in the field's type (lists to tuples, ints to floats); ConfigError otherwise."""
    default = TrainConfig.__dataclass_fields__[key].default
    kind = type(default)
    if kind is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value] if value not in ("", "none", None) else []
        value = tuple(value)
        element = int if key == "fusion_kernels" else str
        if any(not isinstance(v, element) or isinstance(v, bool) for v in value):
            raise ConfigError(f"{key} must be a list of {element.__name__}s, got {list(value)!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}")
    return value


def _check(key, value):
    value = _coerce(key, value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, _CHOICES[key]))}; got {value!r}")
    if key in _RANGES:
        low, high, low_in, high_in = _RANGES[key]
        if not ((value >= low if low_in else value > low) and (value <= high if high_in else value < high)):
            interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ConfigError(f"{key} must be in {interval}; got {value!r}")
    if key == "fusion_kernels" and (not value or any(k < 1 or k % 2 == 0 for k in value)):
        raise ConfigError(f"fusion_kernels must be odd sizes >= 1, got {list(value)!r}")
    if key == "backbone":
        from keras_mamsf.backbones import BACKBONES

        if value not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}; got {value!r}")
