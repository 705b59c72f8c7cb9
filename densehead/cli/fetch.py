"""`densehead fetch [NAME ...]`: find or download each model file, verify it, say where it is."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.options import DEFAULT_FLOAT_REGRESSOR
from ..weights import assets


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        "fetch", help="download and verify the model files",
        description=f"Find or download each model file and verify it. Looks in "
                    f"${assets.ASSETS_ENV}, then the cache (${assets.HOME_ENV}, default "
                    f"{assets.DEFAULT_HOME}); ${assets.MIRROR_ENV} replaces the GitHub URLs "
                    f"with <mirror>/<name>.")
    p.add_argument("names", nargs="*", help=f"files to fetch (known: {', '.join(assets.REGISTRY)})")
    p.add_argument("--regressor", choices=sorted(assets.REGRESSORS),
                   default=DEFAULT_FLOAT_REGRESSOR,
                   help="which regressor weights the default set includes")
    p.add_argument("--all", action="store_true", help="every known file")
    p.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    names = (list(assets.REGISTRY) if args.all
             else (args.names or list(assets.default_names(args.regressor))))
    unknown = [n for n in names if n not in assets.REGISTRY]
    if unknown:
        print(f"densehead: error: unknown model file(s) {', '.join(unknown)}; known: "
              f"{', '.join(assets.REGISTRY)}", file=sys.stderr)
        return 1
    try:
        assets.fetch_all(names)
    except assets.MissingAssetsError as e:
        print(e, file=sys.stderr)
        _print_status(names)
        return 1
    _print_status(names)
    return 0


def _print_status(names: list[str]) -> None:
    for s in assets.status(names):
        mark = {True: "official", False: "NOT the official bytes", None: "missing"}[s.official]
        print(f"{s.name:34s} {mark:24s} {s.source:10s} {s.path or ''}")
