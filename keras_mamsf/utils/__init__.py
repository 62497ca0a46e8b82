from keras_mamsf.utils.atomic import (
    atomic_directory,
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["atomic_directory", "atomic_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]
