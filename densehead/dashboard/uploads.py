"""Uploaded files and results on the server's disk, in a per-session folder that goes away."""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterable


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


def save_upload(data: bytes, name: str, folder: Path) -> Path:
    """Uploaded bytes to a file in `folder`, keeping the suffix (codecs go by it)."""
    path = Path(folder) / ("upload" + Path(name).suffix.lower())
    path.write_bytes(data)
    return path


def upload_types(suffixes: Iterable[str]) -> list[str]:
    """A file uploader's `type` list for a set of file suffixes."""
    return sorted(s.lstrip(".") for s in suffixes)
