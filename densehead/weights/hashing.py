"""Hashes of model files: the git blob sha1 that pins each upstream file, and the sha256 that
keys compiled graphs.

A module of its own, below the others: files are checked against their pins wherever they are
found or downloaded, and the compiled-graph caches (.compile, .detector_graph, .tflite_writer,
.int8_ranges) key on file contents without needing the rest of model-file resolution.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from .registry import AssetSpec

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def git_blob_sha1(path: str | Path) -> str:
    """sha1(b"blob <size>\\0" + content), streamed; memoised per path, size and mtime because
    the same 24 MB file is asked about many times per process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha1(b"blob %d\0" % st.st_size)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    with _hash_lock:
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes: the compiled graphs' cache keys, the int8
    calibration's key."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remember_hash(old: Path, new: Path) -> None:
    """A rename keeps size and mtime; carry the known hash over instead of hashing again."""
    st = new.stat()
    with _hash_lock:
        for (p, size, mtime), digest in list(_hash_cache.items()):
            if p == str(old.resolve()) and (size, mtime) == (st.st_size, st.st_mtime_ns):
                _hash_cache[(str(new.resolve()), size, mtime)] = digest


def is_official(spec: AssetSpec, path: Path) -> bool:
    """Whether `path` holds the very bytes the registry pins for `spec`."""
    if spec.size is not None and path.stat().st_size != spec.size:
        return False  # cheap reject before hashing
    return git_blob_sha1(path) == spec.sha1
