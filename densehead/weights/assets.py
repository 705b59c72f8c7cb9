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

The files and their pins are in .registry, the hashes in .hashing, the transfer itself in
.download; this module decides where a file comes from and what to tell when it cannot be had.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import one_line
from .download import DownloadError, NotOfficialError, download_file
from .hashing import file_sha256, git_blob_sha1, is_official
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

ASSETS_ENV = "DENSEHEAD_ASSETS"
HOME_ENV = "DENSEHEAD_HOME"
MIRROR_ENV = "DENSEHEAD_MIRROR"
DEFAULT_HOME = "~/.cache/densehead"

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
        self.problem = one_line(problem)
        self.fix = fix if fix is not None else replacement_hint(self.path)
        super().__init__(f"unusable model file {self.path}: {self.problem}; {self.fix}")


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


def _download(spec: AssetSpec) -> Path:
    """Download `spec` into the cache; a failure is a MissingAssetsError naming the file."""
    url = source_url(spec.name)
    try:
        return download_file(spec, url, cache_dir())
    except NotOfficialError as e:
        raise AssetVerificationError([MissingAsset(spec.name, url, e.reason)]) from None
    except DownloadError as e:
        raise MissingAssetsError([MissingAsset(spec.name, url, e.reason)]) from None


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

