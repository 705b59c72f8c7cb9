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
import math
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from .assets import ModelFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# torch writes zip members uncompressed, so a real checkpoint's storages fit in its own size;
# a re-compressed one may expand this much, and no more (a 2 MB zip must not become 4 GB)
MAX_ZIP_EXPANSION = 4


class UnsafePickleError(ModelFileError, pickle.UnpicklingError):
    """The pickle references a global outside the allow-list; nothing of it was executed."""


class _Malformed(ValueError):
    """Something in the file contradicts itself or the format; becomes a ModelFileError."""


# What parsing a hostile or damaged file can raise, besides our own _Malformed: all of it
# means "this file is unusable" and is reported as a ModelFileError naming the file.
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                 AttributeError, struct.error, zipfile.BadZipFile, zlib.error, OverflowError,
                 MemoryError, RecursionError, OSError)


def _unusable(path: Path, kind: str, error: BaseException) -> ModelFileError:
    if isinstance(error, _Malformed):
        return ModelFileError(path, str(error))
    detail = str(error) or type(error).__name__
    if isinstance(error, KeyError):
        detail = f"{type(error).__name__} {detail}"
    return ModelFileError(path, f"not a readable {kind} ({detail})")


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
            raise _Malformed("a tensor refers to a storage that was never read")
        numel = math.prod(self.size)
        if numel == 0:
            return np.zeros(self.size, dtype=data.dtype)
        # size, stride and offset come from the file: the view must stay inside the storage
        # (else as_strided would read memory we do not own), and the copy must not be
        # larger than the storage (a zero stride could otherwise blow up a few bytes)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size or numel > data.size:
            raise _Malformed(f"a tensor of shape {self.size} with stride {self.stride} and "
                             f"offset {self.offset} does not fit in its storage of "
                             f"{data.size} elements")
        if not self.size:
            return np.array(data[self.offset])  # 0-d array, not a numpy scalar
        strides = [0 if n == 1 else s * data.itemsize for n, s in zip(self.size, self.stride)]
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=strides)
        return np.ascontiguousarray(view)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
            type(v) is int and v >= 0 for v in value):
        raise _Malformed(f"a tensor {what} is {value!r}, not a tuple of non-negative integers")
    return tuple(value)


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple, stride: tuple,
                       requires_grad: bool = False, hooks: Any = None,
                       metadata: Any = None) -> _PendingTensor:
    if not isinstance(storage, _Storage):
        raise _Malformed(f"a tensor's storage is a {type(storage).__name__}")
    if type(offset) is not int or offset < 0:
        raise _Malformed(f"a tensor has storage offset {offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _Malformed(f"a tensor with size {size} but stride {stride}")
    return _PendingTensor(storage, offset, size, stride)


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


class _ArrayType:
    """Stands in for ``numpy.ndarray`` in data pickles. numpy's own pickles only name the
    class as an argument of ``_reconstruct``; calling it, ``ndarray(shape)``, would hand out
    uninitialised memory (whatever the heap held) as data, so it is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Malformed("the pickle calls numpy.ndarray directly, which numpy never does "
                         "(it would fill the array with uninitialised memory)")


_NDARRAY = _ArrayType()


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # numpy 2 moved numpy.core to numpy._core; pickles written by either carry their own name
    core = getattr(np, "_core", None) or np.core

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), ...) and then its state
        if subtype is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,):
            raise _Malformed("an array is rebuilt in a way numpy's pickles never do")
        return core.multiarray._reconstruct(np.ndarray, (0,), dtype)

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = core.multiarray.scalar
        # protocol 5 pickles of arrays rebuild from a bytes buffer
        allowed[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer
    # protocol 2 pickles spell bytes as _codecs.encode(str, 'latin1'): pure, harmless
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from an explicit allow-list."""

    def __init__(self, file: BinaryIO, allowed: dict[tuple[str, str], Any], path: Path,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")  # latin1: py2 pickles of numpy arrays
        self._allowed = allowed
        self._path = path
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                self._path, f"refusing to unpickle it: it references the global "
                f"'{module}.{name}', which is not one of the {len(self._allowed)} allowed "
                "(array/tensor rebuilders, storage types, OrderedDict). The file may be "
                "malicious or of an unsupported kind"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(self._path, f"unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _check_storage_pid(pid: Any) -> tuple[_StorageType, str, int]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and type(pid[4]) is int and pid[4] >= 0):
        raise _Malformed(f"unsupported persistent id {pid!r}")
    return pid[1], str(pid[2]), pid[4]


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Malformed(f"{what} is truncated")
    return data


def _load_legacy(f: BinaryIO, path: Path, file_size: int) -> Any:
    allowed = _torch_globals()
    header = [_RestrictedUnpickler(f, {}, path).load() for _ in range(3)]
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise _Malformed("not a PyTorch checkpoint (bad magic/protocol)")
    if not sys_info.get("little_endian", True):
        raise _Malformed("big-endian checkpoints are not supported")

    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> _Storage:
        stype, key, numel = _check_storage_pid(pid)
        if len(pid) > 5 and pid[5] is not None:
            raise _Malformed("storage views are not supported")
        return storages.setdefault(key, _Storage(stype.dtype, numel))

    obj = _RestrictedUnpickler(f, allowed, path, persistent).load()
    keys = _RestrictedUnpickler(f, {}, path).load()
    if not isinstance(keys, list):
        raise _Malformed("the list of storage keys is missing")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise _Malformed(f"storage {key!r} is listed but no tensor uses it")
        # the count prefix is always int64, whatever the header says about 'long'
        (numel,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key}"))
        if numel != storage.numel:
            raise _Malformed(f"storage {key} has {numel} elements where its tensors say "
                             f"{storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        remaining = file_size - f.tell()
        if nbytes > remaining:  # checked before reading: never allocate what is not there
            raise _Malformed(f"storage {key} claims {nbytes:,} bytes but only {remaining:,} "
                             "are left in the file (truncated?)")
        storage.data = np.frombuffer(_read_exact(f, nbytes, f"storage {key}"),
                                     dtype=storage.dtype)
    return obj


def _load_zip(f: BinaryIO, path: Path, file_size: int) -> Any:
    budget = MAX_ZIP_EXPANSION * file_size  # bytes we allow ourselves to unpack, in all

    def read_member(name: str, nbytes: int | None = None) -> bytes:
        nonlocal budget
        info = archive.getinfo(name)
        want = info.file_size if nbytes is None else nbytes
        if want > budget:
            raise _Malformed(f"{name} claims {want:,} bytes, more than a file of "
                             f"{file_size:,} bytes can hold")
        with archive.open(info) as member:
            data = member.read(want)
        if len(data) != want:
            raise _Malformed(f"{name} is truncated")
        budget -= want
        return data

    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise _Malformed("zip file without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and read_member(byteorder).strip() != b"little":
            raise _Malformed("big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}

        def persistent(pid: Any) -> _Storage:
            stype, key, numel = _check_storage_pid(pid)
            if key not in storages:
                raw = read_member(f"{prefix}data/{key}", numel * stype.dtype.itemsize)
                storages[key] = _Storage(stype.dtype, numel, np.frombuffer(raw, stype.dtype))
            return storages[key]

        pickled = io.BytesIO(read_member(pkl))
        return _RestrictedUnpickler(pickled, _torch_globals(), path, persistent).load()


def _materialise(obj: Any) -> Any:
    """Replace every pending tensor inside dicts/lists/tuples by its numpy array."""
    if isinstance(obj, _PendingTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        out = type(obj)()
        for key, value in obj.items():
            try:
                out[key] = _materialise(value)
            except _Malformed as e:  # say which tensor
                raise _Malformed(f"{key}: {e}") from None
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def load_torch(path: str | Path) -> Any:
    """Unpickle a PyTorch checkpoint (legacy or zip) with tensors as numpy arrays.
    Raises ModelFileError (one line naming the file) for anything that is not one."""
    path = Path(path)
    with path.open("rb") as f:  # a missing file stays a FileNotFoundError
        try:
            size = path.stat().st_size
            load = _load_zip if zipfile.is_zipfile(f) else _load_legacy
            f.seek(0)
            return _materialise(load(f, path, size))
        except ModelFileError:
            raise
        except _PARSE_ERRORS as e:
            raise _unusable(path, "PyTorch checkpoint", e) from None


def _as_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise ModelFileError(path, "the checkpoint holds no state dict of named tensors")
    return obj


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint: keys without the DataParallel 'module.'
    prefix, floating tensors as float32, integer tensors as they are."""
    state = _as_state_dict(load_torch(path), Path(path))
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32, copy=False)
        out[name] = value
    return out


def load_pickle(path: str | Path) -> Any:
    """Unpickle a data file of numpy arrays (dicts/lists of ndarrays) with only numpy's
    array-rebuilding globals allowed. Raises ModelFileError for anything else."""
    path = Path(path)
    with path.open("rb") as f:  # a missing file stays a FileNotFoundError
        return _unpickle_arrays(f, path)


def loads_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """``load_pickle`` for bytes already in memory."""
    return _unpickle_arrays(io.BytesIO(data), Path(source))


def _unpickle_arrays(f: BinaryIO, path: Path) -> Any:
    try:
        return _RestrictedUnpickler(f, _numpy_globals(), path).load()
    except ModelFileError:
        raise
    except _PARSE_ERRORS as e:
        raise _unusable(path, "numpy pickle", e) from None
