"""Training plumbing: callbacks and multi-device training (imported on first use)."""

from keras_mamsf.utils.lazy import lazy_attributes

_EXPORTS = {"MacroAUC": "keras_mamsf.metrics.macro_auc", "DISTRIBUTE_CHOICES": "keras_mamsf.training.distribution",
            "default_callbacks": "keras_mamsf.training.callbacks",
            "WithWeightEMA": "keras_mamsf.training.callbacks",
            "DriftMonitor": "keras_mamsf.training.drift", "select_probe": "keras_mamsf.training.drift",
            "distributed": "keras_mamsf.training.distribution", "replica_count": "keras_mamsf.training.distribution",
            "reestimate_batchnorm": "keras_mamsf.training.precise_bn"}
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
