from keras_mamsf.utils.atomic import atomic_path, write_text_atomic

__all__ = ["atomic_path", "write_text_atomic"]
