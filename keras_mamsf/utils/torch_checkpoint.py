"""`read_state_dict`: a PyTorch state dict (`.pth`) as NumPy arrays, without torch and without running the
file's code.

A `.pth` is a pickle plus raw tensor storages, in one of two layouts: the legacy stream (torch < 1.6:
magic number, protocol, system info, the state dict's pickle, the storage keys' pickle, then each storage
as an int64 element count and its bytes) or a zip (`<name>/data.pkl` and `<name>/data/<key>`). A pickle
is a program: `torch.load(weights_only=False)` imports and calls whatever it names (`os.system` included).
Here the unpickler resolves only the names a state dict needs (an `OrderedDict`, torch's tensor-rebuilding
call and the typed storage classes), each mapped to a NumPy stand-in; any other name is refused before
anything runs (the same rule as torch's own `weights_only=True` loader, which needs torch installed).
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# torch's typed storage classes as pickled (GLOBAL "torch FloatStorage") -> the NumPy dtype of their elements
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(ValueError):
    """A `.pth` that names something other than tensors and an OrderedDict (it would run code); one line."""


class CheckpointFormatError(ValueError):
    """A `.pth` that is truncated, or not a state dict this reader knows; one line naming the file."""


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor named in the pickle, made an array once its storage has been read (legacy files store
    the storages after the pickle)."""

    def __init__(self, storage_key, offset, size, stride):
        self.storage_key, self.offset, self.size, self.stride = storage_key, int(offset), tuple(size), tuple(stride)

    def resolve(self, storages, path):
        flat = storages[self.storage_key]
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) if all(self.size) else -1
        if self.offset < 0 or last >= flat.size or any(s < 0 for s in self.stride):
            raise CheckpointFormatError(f"{path}: a tensor of shape {self.size} lies outside its storage "
                                        f"({flat.size} elements): the file is damaged")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * flat.itemsize for s in self.stride], writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """Stands in for `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[,
    metadata])` and its v1 form: the requires_grad flag and the backward hooks are dropped."""
    return _TensorRef(storage, storage_offset, size, stride)


def _empty_ordered_dict(*args):
    """Stands in for `OrderedDict` as a REDUCE target: only the empty dict a state dict starts from."""
    if args:  # _unpickle turns this into a CheckpointFormatError naming the file
        raise TypeError("OrderedDict called with arguments")
    return collections.OrderedDict()


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, path, storage_types):
        super().__init__(file)
        self._path = path
        self.storage_types = storage_types  # key -> (dtype, element count) as the pickle declares them

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return _empty_ordered_dict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"{self._path}: refused: the file asks to load {module}.{name}, which is not part of a state dict "
            "(a .pth is a pickle and can run code); use a checkpoint that holds only tensors"
        )

    def persistent_load(self, pid):
        # legacy: ("storage", type, key, location, numel, view_metadata); zip: ("storage", type, key, location, numel)
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise CheckpointFormatError(f"{self._path}: an object reference this reader does not know: {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointFormatError(f"{self._path}: storage views (torch < 0.4 files) are not supported")
        self.storage_types[key] = (storage_type.dtype, numel)
        return key


def _unpickle(handle, path):
    storage_types = {}
    try:
        state = _StateDictUnpickler(handle, path, storage_types).load()
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except Exception as error:  # a damaged pickle: EOFError, UnpicklingError, a bad opcode argument...
        raise CheckpointFormatError(f"{path}: not a readable PyTorch state dict ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    return state, storage_types


def _legacy_storages(handle, path, storage_types):
    try:
        keys = pickle.Unpickler(handle).load()  # a list of strings: no GLOBAL opcode can occur in it
    except Exception:
        raise CheckpointFormatError(f"{path}: truncated (the list of storages is missing)") from None
    if not isinstance(keys, list) or set(keys) != set(storage_types):
        raise CheckpointFormatError(f"{path}: the storages listed do not match the tensors' storages")
    storages = {}
    for key in keys:
        dtype, numel = storage_types[key]
        header = handle.read(8)
        if len(header) != 8 or int.from_bytes(header, "little", signed=True) != numel:
            raise CheckpointFormatError(f"{path}: truncated or damaged at storage {key}")
        data = handle.read(numel * dtype.itemsize)
        if len(data) != numel * dtype.itemsize:
            raise CheckpointFormatError(f"{path}: truncated at storage {key}")
        storages[key] = np.frombuffer(data, dtype=dtype.newbyteorder("<"))
    return storages


def _read_legacy(handle, path):
    try:
        magic, protocol, system = (pickle.Unpickler(handle).load() for _ in range(3))  # plain ints and a dict
    except Exception:
        raise CheckpointFormatError(f"{path}: not a PyTorch checkpoint (no legacy header, not a zip)") from None
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"{path}: not a PyTorch checkpoint (magic number {magic!r})")
    if not isinstance(system, dict) or not system.get("little_endian", True):
        raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
    state, storage_types = _unpickle(handle, path)
    return state, _legacy_storages(handle, path, storage_types)


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointFormatError(f"{path}: a zip without exactly one */data.pkl is not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
        state, storage_types = _unpickle(io.BytesIO(archive.read(pickles[0])), path)
        storages = {}
        for key, (dtype, numel) in storage_types.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise CheckpointFormatError(f"{path}: storage {key} is missing")
            data = archive.read(member)
            if len(data) < numel * dtype.itemsize:
                raise CheckpointFormatError(f"{path}: storage {key} is truncated")
            storages[key] = np.frombuffer(data[: numel * dtype.itemsize], dtype=dtype.newbyteorder("<"))
    return state, storages


def read_state_dict(path):
    """The state dict in the `.pth` file `path`: an `OrderedDict` of name -> `np.ndarray`, in file order.

    Args:
        path: a PyTorch checkpoint holding a state dict (legacy or zip layout), tensors on any device.

    Raises:
        UnsafeCheckpointError: the pickle names anything but an OrderedDict, torch's tensor rebuild and
            typed storages (nothing of the file has run).
        CheckpointFormatError: a truncated, damaged or unknown file.

    Example:
        state = read_state_dict("efficientnet-lite0-57934424.pth")
        state["_conv_stem.weight"].shape      # (32, 3, 3, 3), as torch has it (OIHW)
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        try:
            state, storages = _read_zip(path)
        except zipfile.BadZipFile as error:
            raise CheckpointFormatError(f"{path}: a damaged zip ({error})") from None
    else:
        with open(path, "rb") as handle:
            state, storages = _read_legacy(handle, path)
    if not isinstance(state, collections.OrderedDict):
        raise CheckpointFormatError(f"{path}: holds a {type(state).__name__}, not a state dict")
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise CheckpointFormatError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        arrays[str(name)] = value.resolve(storages, path)
    return arrays
