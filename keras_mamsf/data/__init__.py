from keras_mamsf.data.toy import toy_dataset

__all__ = ["toy_dataset"]
