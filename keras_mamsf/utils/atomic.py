"""Atomic file writes: write beside the target, then rename over it."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path in the target's folder; renames it to `path` on success.

    The temporary name keeps the target's suffix (Keras picks the format from it).
    On error the temporary file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    suffix = ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    os.unlink(tmp)  # writers such as Keras refuse or append to an existing file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_json_atomic(path, data):
    import json

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_directory(path):
    """Like `atomic_path`, for a folder (a SavedModel): yields a temporary folder beside
    `path`, then swaps it in; an existing `path` is replaced only once the new one is complete."""
    import shutil

    path = os.fspath(path).rstrip(os.sep)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "previous"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
