"""`Backbone`: a feature extractor that knows its stages (timm's `feature_info` idea), and the split
into a trunk and the block the anchor covers.

A backbone family declares, once, which layers form each stage; everything else (the anchored
part, the ablation grid's "stage before the final block", "the whole backbone") is said in stage
names, so no code outside the family reads its layer names.
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its name and its layers' names, in graph order."""

    name: str
    layers: tuple


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A `keras.Model` (image -> feature map) and its stages.

    Args:
        model: the feature extractor; its layers are called once each (a functional model).
        stages: `Stage`s from input to output. Layers in no stage (input scaling, normalization) are
            never anchored.
        final_block: the names of the stages anchored by default (the paper's "final block": for
            EfficientNet the last stage and the top convolution).

    Example:
        backbone = build_backbone("efficientnetb0", (224, 224, 3))
        backbone.stage_names             # ("stem", "block1", ..., "block7", "top")
        trunk, block, anchored = backbone.split(["block6"])
    """

    model: keras.Model
    stages: tuple
    final_block: tuple

    def __post_init__(self):
        names = self.stage_names
        if len(set(names)) != len(names):
            raise ValueError(f"backbone {self.model.name}: stage names repeat: {names}")
        unknown = [name for name in self.final_block if name not in names]
        if not self.final_block or unknown:
            raise ValueError(f"backbone {self.model.name}: final_block {self.final_block} must name stages of {names}")

    @property
    def name(self):
        return self.model.name

    @property
    def stage_names(self):
        return tuple(stage.name for stage in self.stages)

    def stage(self, name):
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"backbone {self.name} has no stage {name!r}; its stages: {', '.join(self.stage_names)}")

    def stage_before_final_block(self):
        """The stage just before the final block ("block6" for B0), the ablation's earlier anchor."""
        index = self.stage_names.index(self.final_block[0])
        if index == 0:
            raise ValueError(f"backbone {self.name}: no stage before its final block {self.final_block}")
        return self.stage_names[index - 1]

    def selected_layers(self, anchor_layers=None):
        """Names of the layers `anchor_layers` selects, in graph order: each entry a stage name, or
        (as in 0.1 and 0.2) a layer-name prefix; None selects the final block."""
        entries = tuple(anchor_layers) if anchor_layers else self.final_block
        if not all(isinstance(entry, str) and entry for entry in entries):
            raise ValueError(f"anchor_layers must be non-empty stage names or layer-name prefixes, got "
                             f"{anchor_layers!r}")
        stages = {stage.name: set(stage.layers) for stage in self.stages}
        prefixes = tuple(entry for entry in entries if entry not in stages)
        in_stages = set().union(*(stages[entry] for entry in entries if entry in stages))
        selected = [layer.name for layer in self.model.layers
                    if layer.name in in_stages or (prefixes and layer.name.startswith(prefixes))]
        if not selected:
            raise ValueError(f"no stage or layer of {self.name} is called {', '.join(entries)}; "
                             f"its stages: {', '.join(self.stage_names)}")
        return selected

    def split(self, anchor_layers=None):
        """`(trunk, block, anchored)`: the trunk up to the first selected layer, the block from it to
        the output (what runs on both paths), and `anchored`, the selected layers' names for
        `MomentumAnchor(anchored=...)` (None when they are the whole block).

        So `["block6"]` anchors stage 6 while stage 7 and top run with their online weights on
        both paths. The first selected layer must start a single-input part (a stage, not a layer
        inside a residual block).
        """
        selected = self.selected_layers(anchor_layers)
        first = self.model.get_layer(selected[0])
        cut = first.input  # backbone layers are called once, so this is the tensor inside the backbone
        if not isinstance(cut, keras.KerasTensor):
            raise ValueError(f"layer {first.name} has several inputs; anchor_layers must start at a single-input layer")
        trunk = keras.Model(self.model.inputs, cut, name="trunk")
        try:
            block = keras.Model(cut, self.model.outputs[0], name="final_block")
        except ValueError:  # the tail also needs a tensor from before the cut: a residual connection
            raise ValueError(
                f"anchor_layers {list(anchor_layers or self.final_block)} start at {first.name}, inside a residual "
                f"block of {self.name}; start them at a stage ({', '.join(self.stage_names)})"
            ) from None
        in_block = [layer.name for layer in block.layers if not isinstance(layer, keras.layers.InputLayer)]
        missing = sorted(set(selected) - set(in_block))
        if missing:
            raise ValueError(f"anchor_layers {list(anchor_layers)} select layers that are not on the path to the "
                             f"output of {self.name}: {', '.join(missing[:5])}")
        weighted = [name for name in in_block if block.get_layer(name).weights]
        anchored = None if set(weighted) <= set(selected) else tuple(selected)
        return trunk, block, anchored
