from keras_mamsf.backbones.efficientnet import BACKBONES, last_stage_prefix, load_backbone, split_backbone

__all__ = ["BACKBONES", "last_stage_prefix", "load_backbone", "split_backbone"]
