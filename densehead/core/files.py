"""Files as the user names them: a clear word when one is not there, and writing one so that
readers and a later run never see half of it."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, Union

Content = Union[bytes, str, Callable[[IO[bytes]], Any]]
MAX_NAME_BYTES = 255   # a file name's limit, in bytes, on Linux's common file systems


def atomic_write(path: str | os.PathLike, content: Content, sync: bool = True,
                 temp: Path | None = None) -> Path:
    """Write `path` through a temporary file in its folder, then rename it into place.

    `content` is bytes, text, or a function that writes to the open binary file. `sync` flushes
    the data to disk before the rename, so a crash leaves the old file or the new one, never a
    torn one. `temp` names the temporary file (callers that clean up after killed runs need to
    know it); by default it is a new unique name, so concurrent writers never share one."""
    path = Path(path)
    if temp is None:
        temp, fd = _new_temp(path)
        out = os.fdopen(fd, "wb")
    else:
        out = open(temp, "wb")
    try:
        with out:
            if callable(content):
                content(out)
            else:
                out.write(content.encode() if isinstance(content, str) else content)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_all(contents: dict[Path, bytes]) -> list[Path]:
    """Write files that belong together, all or none: each to a temporary file, renamed into
    place, in the order given, once all are written. A failed write (a full disk) leaves every
    earlier version as it was; a failed rename removes the files this call had put in place.
    Give the files that others refer to first."""
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for path, data in contents.items():
            temp, fd = _new_temp(Path(path))
            staged.append((temp, Path(path)))
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        for temp, path in staged:
            os.replace(temp, path)
            placed.append(path)
    except BaseException:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    return placed


def _new_temp(path: Path) -> tuple[Path, int]:
    """A new file beside `path` and its descriptor, with the permissions a plain open gives
    (the umask's; tempfile.mkstemp's 0600 would pass to the renamed file)."""
    # a name near the limit keeps its start only, so that its temporary name fits too
    start = path.name.encode()[:MAX_NAME_BYTES - 16].decode(errors="ignore")
    while True:
        temp = path.with_name(f".{start}.{secrets.token_hex(4)}.part")
        try:
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def missing_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file (one line for the user), or None if it can."""
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.is_file():
        return None
    # a device or a pipe (/dev/zero, a FIFO) would be read forever or not at all
    return f"{path} is not a regular file" if path.exists() else f"no such file: {path}"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links, or before `a` exists)."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()
