"""`densehead serve`: the dashboard as a server (densehead.dashboard.serve), or N of them behind
one address (densehead.dashboard.replicas)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..dashboard.proxy import DEFAULT_ADDRESS

REPLICA_HELP = """
Several servers behind one address (needs nginx: apt-get install nginx):

  densehead serve --replicas N [--proxy-port 8501] [--proxy-address 0.0.0.0]
                  [--proxy-cert FILE --proxy-key FILE] [--run-dir DIR] [streamlit options ...]

starts N servers on the proxy's port + 1 ... + N (on 127.0.0.1) and nginx on the proxy's port,
which keeps each browser on one server (docs/deployment.md)."""


def add_cli(sub: Any) -> None:
    from ..dashboard import serve

    p = sub.add_parser(
        "serve", usage="densehead serve [--replicas N ...] [streamlit run options ...]",
        help="run the dashboard (streamlit run app.py) with the server's memory settings",
        description=serve.__doc__ + "\nEvery argument after `serve` goes to `streamlit run`, e.g. "
                                    "`densehead serve --server.port 8502`. A MALLOC_ARENA_MAX "
                                    "already in the environment is kept.\n" + REPLICA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run, passed_on=[])


def replica_options() -> argparse.ArgumentParser:
    """The options `serve` reads itself; everything else goes on to `streamlit run`."""
    p = argparse.ArgumentParser(prog="densehead serve", add_help=False, allow_abbrev=False)
    p.add_argument("--replicas", type=int)
    p.add_argument("--proxy-port", type=int, default=8501)
    p.add_argument("--proxy-address", default=DEFAULT_ADDRESS)
    p.add_argument("--proxy-cert", type=Path)
    p.add_argument("--proxy-key", type=Path)
    p.add_argument("--run-dir", type=Path)
    return p


def run(args: argparse.Namespace) -> int:
    from ..dashboard.serve import exec_streamlit

    parser = replica_options()
    own, streamlit_args = parser.parse_known_args(args.passed_on)
    if own.replicas is None:
        if streamlit_args != args.passed_on:
            raise ValueError("--proxy-... and --run-dir go with --replicas N")
        exec_streamlit(args.passed_on)
        return 0  # not reached: this process is now Streamlit
    from ..dashboard.proxy import ProxySettings
    from ..dashboard.replicas import plan_replicas, serve_replicas

    cert, key = (_tls_file(flag, path) for flag, path in (("--proxy-cert", own.proxy_cert),
                                                            ("--proxy-key", own.proxy_key)))
    proxy = ProxySettings(own.proxy_port, own.proxy_address, cert, key)
    run_dir = own.run_dir.absolute() if own.run_dir else None
    return serve_replicas(plan_replicas(own.replicas, proxy, streamlit_args, run_dir))


def _tls_file(flag: str, path: Path | None) -> Path | None:
    """A certificate or key file as nginx needs it: there, and named from the root (nginx reads
    a relative name from its own prefix, the run folder)."""
    from ..core.files import missing_file

    if path is None:
        return None
    if problem := missing_file(path):
        raise ValueError(f"{flag}: {problem}")
    return path.absolute()
