"""`build_model`: the public way to build the MAMSF network (`MAMSFClassifier`)."""

from keras_mamsf.anchor.modes import DEFAULT
from keras_mamsf.labels import CHESTXRAY14_LABELS
from keras_mamsf.models.mamsf_classifier import MAMSFClassifier


def build_model(
    backbone="efficientnetb0",
    input_shape=(224, 224, 3),
    num_classes=len(CHESTXRAY14_LABELS),
    weights=None,
    anchor=DEFAULT.value,
    anchor_decay=0.999,
    anchor_warmup=True,
    anchor_layers=None,
    fusion_filters=256,
    fusion_kernels=(1, 3, 5),
    dropout=0.2,
    *,
    anchor_warmup_gamma=1.0,
    anchor_warmup_power=2.0 / 3.0,
    fusion_activation="swish",
    dtype_policy=None,
    name=None,
):
    """Build the MAMSF model: `MAMSFClassifier` with these arguments (see its docstring);
    `dtype_policy` is its `dtype`.

    Example:
        model = build_model(backbone="efficientnetb0", input_shape=(224, 224, 1), anchor="branch",
                            anchor_layers=["block6"], dtype_policy="mixed_bfloat16")
    """
    return MAMSFClassifier(
        backbone=backbone, input_shape=input_shape, num_classes=num_classes, weights=weights, anchor=anchor,
        anchor_decay=anchor_decay, anchor_warmup=anchor_warmup, anchor_layers=anchor_layers,
        fusion_filters=fusion_filters, fusion_kernels=fusion_kernels, dropout=dropout,
        anchor_warmup_gamma=anchor_warmup_gamma, anchor_warmup_power=anchor_warmup_power,
        fusion_activation=fusion_activation, dtype=dtype_policy, name=name,
    )
