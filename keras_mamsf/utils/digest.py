"""`sha256_of`: the digest that ties a manifest or a metrics file to the model file it describes."""

import hashlib


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
