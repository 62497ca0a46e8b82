"""The out-of-distribution guard: a density of input-space statistics fitted on training images, whose score
every exported artifact carries as its `ood_score` output (`keras_mamsf.layers.OODScore`)."""

from keras_mamsf.guard.ood_guard import (
    ALPHA,
    GUARD_NAME,
    OODGuard,
    fit_guard,
    flagged_report,
    guard_beside,
    guard_from_source,
)

__all__ = ["ALPHA", "GUARD_NAME", "OODGuard", "fit_guard", "flagged_report", "guard_beside", "guard_from_source"]
