"""`densehead benchmark-render`: the C++ renderer alone on the real mesh, per phase."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.machine import this_machine


def add_cli(sub: Any) -> None:
    from ..tools import render_bench

    p = sub.add_parser(
        "benchmark-render", help="time the C++ renderer on the real mesh (640x480, 1280x720)",
        description=render_bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=200,
                   help="timed calls per case and mode (default 200)")
    p.add_argument("--modes", nargs="+", default=["mesh", "depth", "pncc"],
                   choices=["mesh", "depth", "pncc"], help="overlays to time (default: all three)")
    p.add_argument("--assets", default=None,
                   help="folder with bfm_noneck_v3.pkl and tri.pkl (default $DENSEHEAD_ASSETS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools import render_bench

    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    rows = render_bench.run_benchmark(repeats=args.repeats, modes=tuple(args.modes),
                                      assets_dir=Path(args.assets) if args.assets else None)
    print(f"machine: {this_machine().describe()}")
    print(render_bench.format_table(rows))
    print("phases: prepare = index check, bounds, buffers; normals = vertex normals (mesh only);"
          " shade = lighting (mesh) or per-vertex colours; raster = triangle setup + z-test;"
          " blend = alpha blend of covered pixels; total = whole Python call")
    return 0
