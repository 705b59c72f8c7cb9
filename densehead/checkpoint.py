"""Read upstream weight files (PyTorch checkpoints, numpy pickles) into numpy, without torch.

Both kinds of file come from the internet, so they are unpickled with a restricted unpickler
that resolves only the handful of globals these files really contain and refuses any other
global by name (a pickle can otherwise call anything, e.g. ``os.system``).

PyTorch checkpoints come in two layouts:

* legacy (torch < 1.6): a stream of pickles -- magic number, protocol version, system info,
  the object itself (tensors refer to storages by persistent id), the list of storage keys --
  followed by each storage's raw bytes, prefixed by its element count as a little-endian int64;
* zip (torch >= 1.6): ``<name>/data.pkl`` holds the object and ``<name>/data/<key>`` each
  storage's raw bytes.
"""
from __future__ import annotations

import codecs
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list; nothing of it was executed."""


# torch storage class name -> numpy dtype of its elements (little-endian on disk)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    name: str
    dtype: np.dtype


class _Storage:
    """A flat typed buffer; legacy files supply ``data`` only after the object pickle."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None) -> None:
        self.dtype = dtype
        self.numel = numel
        self.data = data


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes may not have been read yet (legacy layout)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError("checkpoint tensor refers to a storage that was never read")
        if not self.size:
            return np.array(data[self.offset])  # 0-d array, not a numpy scalar
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple, stride: tuple,
                       requires_grad: bool = False, hooks: Any = None,
                       metadata: Any = None) -> _PendingTensor:
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor with size {size} but stride {stride}")
    return _PendingTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _PendingTensor, requires_grad: bool = False,
                       hooks: Any = None) -> _PendingTensor:
    return data  # an nn.Parameter is just its tensor for us


def _torch_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(name, dtype)
    return allowed


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # numpy 2 moved numpy.core to numpy._core; pickles written by either carry their own name
    core = getattr(np, "_core", None) or np.core
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = core.multiarray.scalar
        # protocol 5 pickles of arrays rebuild from a bytes buffer
        allowed[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer
    # protocol 2 pickles spell bytes as _codecs.encode(str, 'latin1'): pure, harmless
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from an explicit allow-list."""

    def __init__(self, file: BinaryIO, allowed: dict[tuple[str, str], Any], source: str,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")  # latin1: py2 pickles of numpy arrays
        self._allowed = allowed
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: it references the global "
                f"'{module}.{name}', which is not one of the {len(self._allowed)} allowed "
                "(array/tensor rebuilders, storage types, OrderedDict). The file may be "
                "malicious or of an unsupported kind."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _check_storage_pid(pid: Any, source: str) -> tuple[_StorageType, str, int]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"{source}: unsupported persistent id {pid!r}")
    return pid[1], str(pid[2]), int(pid[4])


def _load_legacy(f: BinaryIO, source: str) -> Any:
    allowed = _torch_globals()
    header = [_RestrictedUnpickler(f, {}, source).load() for _ in range(3)]
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise pickle.UnpicklingError(f"{source}: not a PyTorch checkpoint (bad magic/protocol)")
    if not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError(f"{source}: big-endian checkpoints are not supported")

    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> _Storage:
        stype, key, numel = _check_storage_pid(pid, source)
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError(f"{source}: storage views are not supported")
        return storages.setdefault(key, _Storage(stype.dtype, numel))

    obj = _RestrictedUnpickler(f, allowed, source, persistent).load()
    keys = _RestrictedUnpickler(f, {}, source).load()
    for key in keys:
        storage = storages[str(key)]
        # the count prefix is always int64, whatever the header says about 'long'
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(numel * storage.dtype.itemsize)
        if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
            raise pickle.UnpicklingError(f"{source}: storage {key} is truncated or inconsistent")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return obj


def _load_zip(path: Path, source: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise pickle.UnpicklingError(f"{source}: zip file without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise pickle.UnpicklingError(f"{source}: big-endian checkpoints are not supported")

        def persistent(pid: Any) -> _Storage:
            stype, key, numel = _check_storage_pid(pid, source)
            raw = archive.read(f"{prefix}data/{key}")
            data = np.frombuffer(raw, dtype=stype.dtype)
            if data.size < numel:
                raise pickle.UnpicklingError(f"{source}: storage {key} is truncated")
            return _Storage(stype.dtype, numel, data[:numel])

        with archive.open(pkl) as f:
            return _RestrictedUnpickler(f, _torch_globals(), source, persistent).load()


def _materialise(obj: Any) -> Any:
    """Replace every pending tensor inside dicts/lists/tuples by its numpy array."""
    if isinstance(obj, _PendingTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def load_torch(path: str | Path) -> Any:
    """Unpickle a PyTorch checkpoint (legacy or zip) with tensors as numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _materialise(_load_zip(path, path.name))
    with open(path, "rb") as f:
        return _materialise(_load_legacy(f, path.name))


def _as_state_dict(obj: Any, source: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"{source}: no state dict of tensors found in the checkpoint")
    return obj


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint: keys without the DataParallel 'module.'
    prefix, floating tensors as float32, integer tensors as they are."""
    state = _as_state_dict(load_torch(path), Path(path).name)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32, copy=False)
        out[name] = value
    return out


def load_pickle(path: str | Path) -> Any:
    """Unpickle a data file of numpy arrays (dicts/lists of ndarrays) with only numpy's
    array-rebuilding globals allowed."""
    path = Path(path)
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, _numpy_globals(), path.name).load()


def loads_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """``load_pickle`` for bytes already in memory."""
    return _RestrictedUnpickler(io.BytesIO(data), _numpy_globals(), source).load()
