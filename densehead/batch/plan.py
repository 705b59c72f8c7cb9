"""Which files a batch runs on, and the name each one's outputs get.

An INPUT is a video, an image, a folder (walked recursively; hidden files and folders and the
output folder are left out) or a list file (`.txt`/`.lst`: one path per line, relative paths
relative to the list's folder, blank lines and `# comments` ignored).

Output names keep the input's suffix, so `clip.mp4` and `clip.avi` in one folder never collide:
a file in a folder INPUT is named by its path relative to that folder (`study/a/clip.mp4` ->
`a/clip.mp4`), a file given by itself by its name, a list entry by its path relative to the
list's folder when it lies inside it, else by its name. Two different files that would still
share a name (`x/clip.mp4` and `y/clip.mp4` given by themselves) get `~2`, `~3`, ... in the
order the inputs were given, so the same command always gives the same names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..io.video import VIDEO_SUFFIXES, is_image, is_image_file

LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class Job:
    """One input file: where it is and the name of its outputs under the output folder."""
    source: Path      # absolute path of the input file
    name: str         # output name relative to the output folder, posix, suffix kept: "a/clip.mp4"

    @cached_property   # judged by the file's first bytes: read once
    def kind(self) -> str:
        return "image" if is_image_file(self.source) else "video"


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (input as given, why)
    ignored: list[str] = field(default_factory=list)   # files in folders that are not media


def is_media_name(path: Path) -> bool:
    return is_image(path) or path.suffix.lower() in VIDEO_SUFFIXES


def plan_inputs(inputs: Iterable[str | Path], output_dir: str | Path) -> Plan:
    """The jobs for `inputs` in the order given (folders in sorted order), each file once.
    Raises ValueError when the output folder is one of the input folders."""
    plan = Plan()
    names = _Names()
    out = Path(output_dir).resolve()
    for given in inputs:
        _add_input(plan, names, Path(given), out, lists_seen=set())
    return plan


def _add_input(plan: Plan, names: "_Names", given: Path, out: Path, lists_seen: set[Path],
               base: Path | None = None, label: str | None = None) -> None:
    """One input: `base` is the folder list entries are named relative to."""
    path = given.expanduser()
    if not path.exists():
        plan.missing.append((label or str(given), f"no such file or folder: {given}"))
    elif path.is_dir():
        root = path.resolve()
        if root == out:  # its overlay videos would be read as inputs by the next run
            raise ValueError(f"the output folder {given} is also an input folder; write the "
                             f"tables elsewhere (a folder inside it is fine)")
        for file in _walk(root, out, plan):
            names.add(plan, file, file.relative_to(root).as_posix())
    elif path.suffix.lower() in LIST_SUFFIXES:
        _add_list(plan, names, path.resolve(), out, lists_seen)
    else:
        source = path.resolve()
        inside = base is not None and source.is_relative_to(base)
        names.add(plan, source, source.relative_to(base).as_posix() if inside else source.name)


def _add_list(plan: Plan, names: "_Names", listing: Path, out: Path,
              lists_seen: set[Path]) -> None:
    if listing in lists_seen:  # a list that lists itself (or a cycle): once is enough
        return
    lists_seen.add(listing)
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        plan.missing.append((str(listing), f"cannot read the list file {listing.name}: {error}"))
        return
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else listing.parent / path
        _add_input(plan, names, path, out, lists_seen, base=listing.parent,
                   label=f"{entry} (line {number} of {listing.name})")


def _walk(root: Path, out: Path, plan: Plan) -> list[Path]:
    """Media files under `root`, sorted by relative path; other files go to plan.ignored."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != out)
        for name in sorted(f for f in files if not f.startswith(".")):
            file = here / name
            if is_media_name(file):
                found.append(file)
            else:
                plan.ignored.append(str(file))
    return sorted(found, key=lambda p: PurePosixPath(p.relative_to(root).as_posix()).parts)


class _Names:
    """Output names handed out so far: one per source file, never two alike (case-blind, as
    macOS and Windows file systems are)."""

    def __init__(self) -> None:
        self._sources: set[Path] = set()
        self._taken: set[str] = set()

    def add(self, plan: Plan, source: Path, name: str) -> None:
        if source in self._sources:
            return
        stem, n = name, 1
        while name.casefold() in self._taken:
            n += 1
            name = f"{stem}~{n}"
        self._sources.add(source)
        self._taken.add(name.casefold())
        plan.jobs.append(Job(source=source, name=name))
