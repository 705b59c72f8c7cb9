"""Where model files come from: an explicit directory, the cache, or a verified download.

Every file is identified by its git blob sha1 at a pinned upstream commit, so the bytes we use are
exactly the bytes the upstream repository published. Resolution order for one file:

1. `$DENSEHEAD_ASSETS/<name>`: used as is; if its hash is not the official one it still loads,
   with an `UnofficialAssetWarning` (the offline stand-in `bfm_noneck_v3.pkl` is such a file).
2. `$DENSEHEAD_HOME/<name>` (default `~/.cache/densehead`): used if it verifies, else deleted.
3. download from the pinned GitHub raw URL (or `$DENSEHEAD_MIRROR/<name>`) into a temporary file
   next to the cache entry, verify, then rename: a partial or corrupted download is never left
   under the name a later run would trust. A download stops at its file's known size (plus one
   byte), within an overall deadline (`$DENSEHEAD_DOWNLOAD_DEADLINE` seconds), and is retried a
   few times with backoff when the connection drops or the server fails.

A file that is found but cannot be loaded (truncated, corrupt, unsafe, wrong content) raises
`ModelFileError`: one line naming the file and how to replace it.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import requests

try:  # POSIX: a download holds an flock on its .part file, so others know it is alive
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .hashing import file_sha256, git_blob_sha1, is_official, remember_hash
from .registry import (
    BFM_FILE,
    DEFAULT_NAMES,
    DETECTOR_FILE,
    FLOAT_REGRESSORS,
    REGISTRY,
    REGRESSORS,
    STATS_FILE,
    TRI_FILE,
    AssetSpec,
    default_names,
)

log = logging.getLogger(__name__)
ASSETS_ENV = "DENSEHEAD_ASSETS"
HOME_ENV = "DENSEHEAD_HOME"
MIRROR_ENV = "DENSEHEAD_MIRROR"
DEFAULT_HOME = "~/.cache/densehead"
DEADLINE_ENV = "DENSEHEAD_DOWNLOAD_DEADLINE"
DOWNLOAD_TIMEOUT_S = 30  # a connection that sends nothing for this long is given up
# Per file, every attempt included: the 24 MB face model at 256 kbit/s takes about 12 minutes.
DEFAULT_DEADLINE_S = 900.0
DOWNLOAD_ATTEMPTS = 3  # a dropped or failed transfer is tried again, twice
RETRY_BACKOFF_S = 1.0  # wait before the second attempt; doubled before each later one
CHUNK_BYTES = 64 * 1024
STALE_PART_AGE_S = 3600  # where .part files cannot be locked (no fcntl): age decides

# What callers import from here: this module's own names, and those of the registry and the
# hashes, which have modules of their own (.registry, .hashing) and are re-exported so that
# every import of them keeps working.
__all__ = [
    "ASSETS_ENV", "BFM_FILE", "DEFAULT_HOME", "DEFAULT_NAMES", "DETECTOR_FILE", "FLOAT_REGRESSORS",
    "HOME_ENV", "MIRROR_ENV", "REGISTRY", "REGRESSORS", "STATS_FILE", "TRI_FILE",
    "AssetSpec", "AssetStatus", "AssetVerificationError", "MissingAsset", "MissingAssetsError",
    "ModelFileError", "UnofficialAssetWarning", "assets_dir", "cache_dir", "compiled_dir",
    "default_names", "fetch_all", "file_sha256", "git_blob_sha1", "is_official",
    "replacement_hint", "resolve", "resolve_many", "source_url", "status",
]


class UnofficialAssetWarning(UserWarning):
    """A file from the assets directory whose bytes differ from the official upstream file."""


@dataclass(frozen=True)
class MissingAsset:
    name: str
    url: str
    reason: str


class MissingAssetsError(FileNotFoundError):
    """Files that could neither be found nor downloaded (and verified). `missing` lists them."""

    def __init__(self, missing: list[MissingAsset]) -> None:
        self.missing = missing
        self.message = _missing_message(missing)
        super().__init__(self.message)

    def __str__(self) -> str:  # OSError would otherwise format its args as a tuple
        return self.message


class AssetVerificationError(MissingAssetsError):
    """A download whose bytes are not the official ones (nothing was kept)."""


class ModelFileError(ValueError):
    """A model file that exists but cannot be used: truncated, corrupt, unsafe, or not holding
    what it should. Its message is one line: the file, what is wrong, and how to fix it."""

    def __init__(self, path: str | Path, problem: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.problem = _one_line(problem)
        self.fix = fix if fix is not None else replacement_hint(self.path)
        super().__init__(f"unusable model file {self.path}: {self.problem}; {self.fix}")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def replacement_hint(path: Path) -> str:
    """How to get a good copy of `path`, depending on where it lives."""
    folder = path.parent.resolve()
    if folder == compiled_dir().resolve():
        return "delete it; densehead compiles it again on the next run"
    spec = REGISTRY.get(path.name)
    if spec is None:
        return "replace it with a good copy of the file"
    root = assets_dir()
    if root is not None and folder == root.resolve():
        return (f"replace it with the official file from {spec.url}, or remove it from "
                f"{ASSETS_ENV} ({root}) to use a verified download")
    return (f"delete it and run `python -m densehead fetch {spec.name}`, "
            f"or download it from {spec.url}")


def _missing_message(missing: list[MissingAsset]) -> str:
    explicit = os.environ.get(ASSETS_ENV)
    lines = [f"{len(missing)} model file(s) could not be found or downloaded:"]
    if explicit and not Path(explicit).expanduser().is_dir():
        lines.insert(0, f"{ASSETS_ENV} names {explicit}, which is not a folder: is it mistyped?")
    for m in missing:
        lines += [f"  - {m.name}", f"      download: {m.url}"]
        official = REGISTRY[m.name].url if m.name in REGISTRY else m.url
        if official != m.url:
            lines.append(f"      upstream: {official}")
        lines.append(f"      problem:  {m.reason}")
    where = f"the {ASSETS_ENV} directory ({explicit})" if explicit else \
        f"a directory named by the {ASSETS_ENV} environment variable"
    lines.append(f"Download each file from its URL and put it in {where} or in the cache "
                 f"directory {cache_dir()}; or, when online, run `python -m densehead fetch`.")
    return "\n".join(lines)


@dataclass(frozen=True)
class AssetStatus:
    name: str
    path: Path | None
    official: bool | None  # None when missing
    source: str  # 'assets-dir' | 'cache' | 'missing'


def cache_dir() -> Path:
    """Where downloads (and, under `compiled/`, the compiled .tflite graphs) are kept.
    Not created here: writers create it when they first write."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def compiled_dir() -> Path:
    """Where the compiled .tflite graphs are kept (under the cache)."""
    return cache_dir() / "compiled"


def assets_dir() -> Path | None:
    """The explicit directory named by DENSEHEAD_ASSETS, if set."""
    value = os.environ.get(ASSETS_ENV)
    return Path(value).expanduser() if value else None


# --- resolution ----------------------------------------------------------------------------

def _spec_for(name: str) -> AssetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model file {name!r}; known: {', '.join(REGISTRY)}") from None


def source_url(name: str) -> str:
    """Where `name` is downloaded from: the mirror when DENSEHEAD_MIRROR is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{name}" if mirror else _spec_for(name).url


def _from_assets_dir(spec: AssetSpec) -> Path | None:
    root = assets_dir()
    if root is None or not (root / spec.name).is_file():
        return None
    path = root / spec.name
    if not is_official(spec, path):
        warnings.warn(f"{path} is not the official {spec.name} (its git blob sha1 is "
                      f"{git_blob_sha1(path)}, the official bytes have {spec.sha1}); "
                      f"using it anyway because it is in {ASSETS_ENV}",
                      UnofficialAssetWarning, stacklevel=3)
    return path


def _from_cache(spec: AssetSpec) -> Path | None:
    path = cache_dir() / spec.name
    if not path.is_file():
        return None
    if is_official(spec, path):
        return path
    warnings.warn(f"cached {path} failed verification; deleting it and downloading again",
                  RuntimeWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def resolve(name: str, download: bool = True) -> Path:
    """Path of a verified (or explicitly provided) copy of `name`; downloads it if allowed.
    Raises MissingAssetsError (AssetVerificationError for bad bytes) when there is none."""
    spec = _spec_for(name)
    path = _from_assets_dir(spec) or _from_cache(spec)
    if path is not None:
        return path
    if not download:
        raise MissingAssetsError([MissingAsset(name, source_url(name),
                                               "not found and downloading was not allowed")])
    return _download(spec)


def resolve_many(names: Iterable[str] = DEFAULT_NAMES, download: bool = True) -> dict[str, Path]:
    """resolve() each name; one MissingAssetsError naming every file that failed."""
    found: dict[str, Path] = {}
    missing: list[MissingAsset] = []
    for name in names:
        try:
            found[name] = resolve(name, download=download)
        except MissingAssetsError as e:
            missing.extend(e.missing)
    if missing:
        raise MissingAssetsError(missing)
    return found


def fetch_all(names: Iterable[str] | None = None) -> dict[str, Path]:
    """Make sure every file (default: the product's set) is available; used by `fetch`."""
    return resolve_many(DEFAULT_NAMES if names is None else names)


def status(names: Iterable[str] | None = None) -> list[AssetStatus]:
    """Where each file would come from right now, without downloading or deleting anything."""
    out = []
    for name in (REGISTRY if names is None else names):
        spec = _spec_for(name)
        root = assets_dir()
        candidates = [(root / name, "assets-dir")] if root is not None else []
        candidates.append((cache_dir() / name, "cache"))
        for path, source in candidates:
            if path.is_file():
                out.append(AssetStatus(name, path, is_official(spec, path), source))
                break
        else:
            out.append(AssetStatus(name, None, None, "missing"))
    return out


# --- download ------------------------------------------------------------------------------

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


def _download(spec: AssetSpec) -> Path:
    url = source_url(spec.name)
    log.info("downloading %s from %s", spec.name, url)
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(directory, spec.name)
    tmp, out = _open_part(directory, spec.name)
    try:
        try:
            _fetch(url, out, spec.byte_cap, spec.name)
        except _TransferFailed as e:
            raise MissingAssetsError([MissingAsset(
                spec.name, url, f"download failed: {e.reason}; nothing was kept")]) from None
        out.flush()
        if not is_official(spec, tmp):
            got = f"{tmp.stat().st_size} bytes, git blob sha1 {git_blob_sha1(tmp)}"
            want = f"{spec.size} bytes, " if spec.size is not None else ""
            raise AssetVerificationError([MissingAsset(
                spec.name, url, f"downloaded bytes are not the official file "
                f"(got {got}; expected {want}git blob sha1 {spec.sha1}); nothing was kept")])
        final = directory / spec.name
        os.replace(tmp, final)  # atomic on one filesystem: readers see all or nothing
        remember_hash(tmp, final)
        log.info("%s verified and cached at %s", spec.name, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)
        out.close()  # releases the lock, after the rename


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
    return _one_line(text, 200)

