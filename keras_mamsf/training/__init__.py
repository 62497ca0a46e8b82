from keras_mamsf.training.callbacks import default_callbacks
from keras_mamsf.training.distribution import DISTRIBUTE_CHOICES, distributed, replica_count

__all__ = ["DISTRIBUTE_CHOICES", "default_callbacks", "distributed", "replica_count"]
