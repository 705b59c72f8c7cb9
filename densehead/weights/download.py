"""Downloading one model file: streamed into a locked .part file next to its final name, capped
at the file's known size (plus one byte), within one deadline for every attempt
(`$DENSEHEAD_DOWNLOAD_DEADLINE` seconds), retried with backoff when the connection drops or the
server fails, verified, then renamed. Where the file comes from and what to do when it cannot be
had is .assets' business; this module only brings the bytes or says why it could not.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import requests

try:  # POSIX: a download holds an flock on its .part file, so others know it is alive
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ..core.errors import one_line
from .hashing import git_blob_sha1, is_official, remember_hash
from .registry import AssetSpec

log = logging.getLogger(__name__)
DEADLINE_ENV = "DENSEHEAD_DOWNLOAD_DEADLINE"
DOWNLOAD_TIMEOUT_S = 30  # a connection that sends nothing for this long is given up
# Per file, every attempt included: the 24 MB face model at 256 kbit/s takes about 12 minutes.
DEFAULT_DEADLINE_S = 900.0
DOWNLOAD_ATTEMPTS = 3  # a dropped or failed transfer is tried again, twice
RETRY_BACKOFF_S = 1.0  # wait before the second attempt; doubled before each later one
CHUNK_BYTES = 64 * 1024
STALE_PART_AGE_S = 3600  # where .part files cannot be locked (no fcntl): age decides


class DownloadError(Exception):
    """A download that did not bring the file; nothing was kept. `reason` is one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotOfficialError(DownloadError):
    """A download whose bytes are not the official file."""


class _TransferFailed(Exception):
    """One attempt that did not bring the file; `retry` says whether another may do better."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


@dataclass(frozen=True)
class _Deadline:
    seconds: float
    at: float  # time.monotonic() value

    @classmethod
    def from_env(cls) -> "_Deadline":
        value = os.environ.get(DEADLINE_ENV)
        try:
            seconds = float(value) if value else DEFAULT_DEADLINE_S
        except ValueError:
            raise ValueError(f"{DEADLINE_ENV}={value!r} is not a number of seconds") from None
        return cls(seconds, time.monotonic() + seconds)

    def passed(self, after_s: float = 0.0) -> bool:
        return time.monotonic() + after_s > self.at

    def failure(self) -> _TransferFailed:
        return _TransferFailed(f"the download took longer than its {self.seconds:g} s deadline "
                               f"(set {DEADLINE_ENV} to allow more)", retry=False)


def _remove_if_stale(part: Path) -> None:
    """Remove a .part file unless a live process holds its download lock (an flock dies
    with its process, however it was killed)."""
    if fcntl is None:
        if time.time() - part.stat().st_mtime > STALE_PART_AGE_S:
            part.unlink()
        return
    with part.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a download in progress
        part.unlink()  # while we hold the lock, so no new download can have adopted it


def _remove_stale_parts(directory: Path, name: str) -> None:
    """Temporary files left by killed downloads: never trusted, only cleaned up."""
    for part in directory.glob(f".{name}.*.part"):
        try:
            _remove_if_stale(part)
        except OSError:
            pass  # gone meanwhile, or not ours to remove


def _open_part(directory: Path, name: str) -> tuple[Path, BinaryIO]:
    """A new .part file, open and locked for as long as this download runs."""
    while True:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        out = os.fdopen(fd, "w+b")
        if fcntl is None:
            return Path(tmp_name), out
        fcntl.flock(out, fcntl.LOCK_EX)
        try:  # a cleanup may have removed it between mkstemp and flock: then start over
            if os.path.samestat(os.fstat(fd), os.stat(tmp_name)):
                return Path(tmp_name), out
        except FileNotFoundError:
            pass
        out.close()


def _request(url: str) -> "requests.Response":
    import requests
    import urllib3

    try:
        # identity: the bytes to verify are the file's own, not a compressed form of them
        return requests.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT_S,
                            headers={"Accept-Encoding": "identity"})
    except requests.RequestException as e:
        cause = getattr(e.args[0], "reason", None) if e.args else None
        # nothing listening, no route, no such host: trying again at once would not help
        # (urllib3's NewConnectionError is a ConnectTimeoutError too)
        unreachable = isinstance(e, requests.ConnectTimeout) or isinstance(
            cause, urllib3.exceptions.ConnectTimeoutError)
        dropped = isinstance(e, (requests.ConnectionError, requests.Timeout))
        raise _TransferFailed(_short(e), retry=dropped and not unreachable) from None


def _transfer(url: str, out: BinaryIO, cap: int, deadline: _Deadline, label: str) -> None:
    """One attempt: stream `url` into `out`, never more than `cap` bytes, giving up once
    the deadline has passed. Raises _TransferFailed."""
    import urllib3
    from tqdm import tqdm

    with _request(url) as response:
        code = response.status_code
        if code != 200:
            raise _TransferFailed(f"the server answered HTTP {code} {response.reason or ''}"
                                  .strip(), retry=code >= 500 or code == 429)
        announced = response.headers.get("Content-Length", "")
        length = int(announced) if announced.isdigit() else None
        if length is not None and length > cap:
            raise _TransferFailed(f"the server announced {length:,} bytes, more than the "
                                  f"{cap:,} bytes expected", retry=False)
        received = 0
        with tqdm(total=length, unit="B", unit_scale=True, desc=label, file=sys.stderr) as bar:
            while True:
                if deadline.passed():
                    raise deadline.failure()
                try:  # read1 returns as soon as some bytes arrive: a trickle cannot hide time
                    chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
                except (urllib3.exceptions.HTTPError, OSError) as e:
                    raise _TransferFailed(_short(e), retry=True) from None
                if not chunk:
                    break
                received += len(chunk)
                if received > cap:  # stop at cap + 1 bytes at the latest
                    raise _TransferFailed(f"the server sent more than the {cap:,} bytes "
                                          "expected", retry=False)
                out.write(chunk)
                bar.update(len(chunk))
        if length is not None and received != length:
            raise _TransferFailed(_short(ConnectionError("Connection broken")), retry=True)


def _fetch(url: str, out: BinaryIO, cap: int, label: str) -> None:
    """_transfer with a few retries and doubling backoff, all within one deadline."""
    deadline = _Deadline.from_env()
    delay = RETRY_BACKOFF_S
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        out.seek(0)
        out.truncate()
        try:
            _transfer(url, out, cap, deadline, label)
            return
        except _TransferFailed as e:
            failure = e
        if not failure.retry or attempt == DOWNLOAD_ATTEMPTS:
            break
        if deadline.passed(after_s=delay):
            failure = deadline.failure()
            break
        time.sleep(delay)
        delay *= 2
    after = f" (after {attempt} attempts)" if attempt > 1 else ""
    raise _TransferFailed(failure.reason + after, retry=False)


def download_file(spec: AssetSpec, url: str, directory: Path) -> Path:
    """Download `spec`'s file from `url` into `directory`, verified, and return its path there.
    A .part file is written and renamed only once its bytes are the official ones, so a failed
    or killed download never leaves a file that a later run would trust. Raises DownloadError
    (NotOfficialError for bytes that are not the official file)."""
    log.info("downloading %s from %s", spec.name, url)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(directory, spec.name)
    tmp, out = _open_part(directory, spec.name)
    try:
        try:
            _fetch(url, out, spec.byte_cap, spec.name)
        except _TransferFailed as e:
            raise DownloadError(f"download failed: {e.reason}; nothing was kept") from None
        out.flush()
        _check_official(spec, tmp)
        final = directory / spec.name
        os.replace(tmp, final)  # atomic on one filesystem: readers see all or nothing
        remember_hash(tmp, final)
        log.info("%s verified and cached at %s", spec.name, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)
        out.close()  # releases the lock, after the rename


def _check_official(spec: AssetSpec, path: Path) -> None:
    if not is_official(spec, path):
        got = f"{path.stat().st_size} bytes, git blob sha1 {git_blob_sha1(path)}"
        want = f"{spec.size} bytes, " if spec.size is not None else ""
        raise NotOfficialError(f"downloaded bytes are not the official file (got {got}; "
                               f"expected {want}git blob sha1 {spec.sha1}); nothing was kept")


def _short(error: BaseException) -> str:
    """One line about a network error (requests nests the socket error several levels deep)."""
    text = str(error) or type(error).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (offline, or the server is down)"
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the connection was dropped during the transfer"
    if "Connection aborted" in text or "Connection reset" in text:
        return "the server closed the connection without sending the file"
    if "Max retries exceeded" in text or "NameResolution" in text:
        return "could not reach the server (offline?)"
    if "timed out" in text:
        return f"the server sent nothing for {DOWNLOAD_TIMEOUT_S} s"
    return one_line(text, 200)
