from keras_mamsf.training.callbacks import default_callbacks

__all__ = ["default_callbacks"]
