"""The backbone table: name -> builder. A family registers its variants here
(`efficientnet.py` does for B0-B7, V2, Lite0 and the test backbone); a user can add their own.

    register_backbone("my_cnn", lambda input_shape, weights=None: Backbone(model, stages, ("s4",)))
    build_model(backbone="my_cnn", ...)   # anchors stage s4 by default
"""

import os

BACKBONES = {}


def register_backbone(name, builder):
    """Make `builder(input_shape, weights=None) -> Backbone` available as `backbone=name`.

    `weights` reaches the builder as None, "imagenet" or the path of an existing `.h5` file.
    Registering a name again replaces its builder.
    """
    key = str(name).lower()
    if not key or not callable(builder):
        raise ValueError(f"register_backbone needs a name and a builder, got {name!r}, {builder!r}")
    BACKBONES[key] = builder
    return builder


def build_backbone(name, input_shape, weights=None):
    """The `Backbone` called `name`, for RGB `input_shape`, with `weights` (None: random init;
    "imagenet": downloaded by Keras on first use; or the path of a weights file for that variant)."""
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    if weights not in (None, "imagenet"):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"backbone weights file {path} does not exist: pass weights=None, 'imagenet' or an existing file"
            )
        if not path.endswith(".h5"):
            raise ValueError(f"backbone weights file {path} must be a .weights.h5 or Keras *_notop.h5 weights file")
        weights = path
    return BACKBONES[key](tuple(int(d) for d in input_shape), weights)


def load_backbone(name, input_shape, weights=None):
    """The feature extractor of `build_backbone(name, ...)`, as a `keras.Model`."""
    return build_backbone(name, input_shape, weights).model
