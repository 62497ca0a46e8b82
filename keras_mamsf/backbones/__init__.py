"""Backbones: the table of names (`BACKBONES`, `register_backbone`) and the families that fill it.
A `Backbone` is a feature extractor plus its stages; `split` cuts it into a trunk and the block the
anchor covers. To add a family: a module that builds the model, declares its stages and calls
`register_backbone` for each variant, imported below."""

from keras_mamsf.backbones import efficientnet  # noqa: F401  (registers the EfficientNet family)
from keras_mamsf.backbones.backbone import Backbone, Stage
from keras_mamsf.backbones.registry import (
    BACKBONES,
    build_backbone,
    load_backbone,
    register_backbone,
)

__all__ = ["BACKBONES", "Backbone", "Stage", "build_backbone", "load_backbone", "register_backbone"]
