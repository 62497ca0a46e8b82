"""`walk_layers`: every layer inside a model, through public attributes only."""

import keras


def walk_layers(layer):
    """Yield the layers inside `layer` (pre-order, `layer` itself excluded, each once).

    Follows the public `layers` list of models and `keras.Sequential`, and the
    `sublayers` of our own composite layers (`MultiScaleFusion`, `MomentumAnchor`), so
    no private Keras attribute (`_flatten_layers`, `_layers`) is needed.
    """
    seen = set()

    def children(parent):
        for child in list(getattr(parent, "layers", None) or []) + list(getattr(parent, "sublayers", None) or []):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            yield child
            yield from children(child)

    yield from children(layer)


def leaf_layers(layer):
    """The layers inside `layer` that have no layers of their own (its building blocks)."""
    return [sub for sub in walk_layers(layer) if not (getattr(sub, "layers", None) or getattr(sub, "sublayers", None))]
