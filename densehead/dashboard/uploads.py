"""Uploaded files and results on the server's disk, in a per-session folder that goes away."""
from __future__ import annotations

import re
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..core.files import MAX_NAME_BYTES


class TempFolder:
    """A private temporary folder, deleted by `close()` (the janitor calls it when the session
    ends), when the object is collected, or at server exit, whichever comes first."""

    def __init__(self, prefix: str = "densehead-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._remove = weakref.finalize(self, shutil.rmtree, self.path, True)

    def clear(self) -> None:
        """Delete what it holds; keep the folder."""
        for item in self.path.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)

    def close(self) -> None:
        self._remove()

    def status(self) -> dict[str, Any]:
        files = [p for p in self.path.rglob("*") if p.is_file()] if self.path.is_dir() else []
        return {"path": str(self.path), "exists": self.path.is_dir(), "files": len(files),
                "bytes": sum(p.stat().st_size for p in files)}


@contextmanager
def saved_upload(data: bytes, name: str, folder: Path) -> Iterator[Path]:
    """Uploaded bytes as a file under the name the person gave it, so that messages about it name
    their file; in a folder of its own inside `folder` (no clash with results kept there), which
    goes when the block ends."""
    own = Path(tempfile.mkdtemp(prefix="upload-", dir=folder))
    try:
        path = own / upload_file_name(name)
        path.write_bytes(data)
        yield path
    finally:
        shutil.rmtree(own, ignore_errors=True)


def upload_file_name(name: str) -> str:
    """The browser's file name as a name in a folder; `upload` and its suffix where that cannot be
    one (empty, a dot name, a NUL, too long for the file system)."""
    base = Path(name).name
    if base in ("", ".", "..") or "\0" in base or len(base.encode()) > MAX_NAME_BYTES:
        suffix = Path(base.replace("\0", "")).suffix
        return "upload" + (suffix if len(suffix.encode()) < 32 else "")
    return base


def upload_types(suffixes: Iterable[str]) -> list[str]:
    """A file uploader's `type` list for a set of file suffixes."""
    return sorted(s.lstrip(".") for s in suffixes)


# characters no file name may hold on one system or another (Windows' list, controls, slashes)
_UNSAFE_IN_NAMES = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
DOWNLOAD_STEM_BYTES = 100   # leaves room for "_face0_textured.zip" and the like under 255


def download_stem(name: str, fallback: str) -> str:
    """The stem of a download's name (and of the files in its zip) from an upload's name: no
    folder part, no character a file system refuses, at most DOWNLOAD_STEM_BYTES; `fallback`
    when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _UNSAFE_IN_NAMES.sub("_", stem)
    stem = stem.encode()[:DOWNLOAD_STEM_BYTES].decode(errors="ignore").strip(" .")
    return stem or fallback
