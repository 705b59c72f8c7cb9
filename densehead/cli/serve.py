"""`densehead serve`: the dashboard as a server (densehead.dashboard.serve)."""
from __future__ import annotations

import argparse
from typing import Any


def add_cli(sub: Any) -> None:
    from ..dashboard import serve

    p = sub.add_parser(
        "serve", usage="densehead serve [streamlit run options ...]",
        help="run the dashboard (streamlit run app.py) with the server's memory settings",
        description=serve.__doc__ + "\nEvery argument after `serve` goes to `streamlit run`, e.g. "
                                    "`densehead serve --server.port 8502`. A MALLOC_ARENA_MAX "
                                    "already in the environment is kept.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run, passed_on=[])


def run(args: argparse.Namespace) -> int:
    from ..dashboard.serve import exec_streamlit

    exec_streamlit(args.passed_on)
    return 0  # not reached: this process is now Streamlit
