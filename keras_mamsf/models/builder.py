"""`build_model`: the public way to build the MAMSF network (`MAMSFClassifier`)."""

from keras_mamsf.models.mamsf_classifier import MAMSFClassifier


def build_model(*args, dtype_policy=None, **kwargs):
    """Build the MAMSF model: `MAMSFClassifier(*args, **kwargs)` (its arguments, defaults and docs are
    the classifier's: one definition), with `dtype_policy` as its `dtype`.

    Example:
        model = build_model(backbone="efficientnetb0", input_shape=(224, 224, 1), anchor="branch",
                            anchor_layers=["block6"], dtype_policy="mixed_bfloat16")
    """
    if dtype_policy is not None:
        if kwargs.get("dtype") is not None:
            raise ValueError("build_model: pass dtype_policy or dtype, not both")
        kwargs["dtype"] = dtype_policy
    return MAMSFClassifier(*args, **kwargs)
