"""`python -m densehead COMMAND ...`: one module per group of commands, each with an `add_cli`
that registers its subcommands; this module builds the parser and turns every user-facing
failure into one line on stderr and exit code 1.

May import: core, weights, engine, render, io, batch, dashboard, tools.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings

from ..core.errors import ImageError, VideoError
from ..weights.assets import MissingAssetsError

log = logging.getLogger("densehead")

# the command groups, in the order `--help` lists them
GROUPS = ("modes", "export", "batch", "serve", "benchmark", "fetch", "render_bench", "evaluate",
          "live_bench", "peer_bench", "mediapipe_bench")
PASS_ON = ("serve",)   # commands whose arguments go to another program as they are


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="densehead", description="CPU real-time 3D dense face alignment (3DDFA_V2 on TFLite).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (stderr)")
    sub = parser.add_subparsers(metavar="command")
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").add_cli(sub)
    for command in sub.choices.values():   # `densehead sparse -f x -v` as well as `densehead -v`
        with contextlib.suppress(argparse.ArgumentError):   # a command with a -v of its own
            command.add_argument("-v", "--verbose", action="store_true",
                                 default=argparse.SUPPRESS, help="log what happens (stderr)")
        command.set_defaults(command_parser=command)   # its own usage line for its errors
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    argv, passed_on = _split_passed_on(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:   # said with the command's own usage line, not the top level's
        getattr(args, "command_parser", parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    if passed_on is not None:
        args.passed_on = passed_on
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())   # as `warning:` lines
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="densehead: %(levelname)s: %(message)s")
    warnings.showwarning = _one_line_warning
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ImageError, VideoError, MissingAssetsError, ValueError, OSError) as error:
        log.debug("command failed", exc_info=True)
        print(f"densehead: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:   # outputs are renamed into place when complete: none is torn
        print("densehead: interrupted", file=sys.stderr)
        return 130


def _split_passed_on(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """A command that hands its arguments on (`serve` to `streamlit run`) gets them untouched:
    argparse would take `--server.port 8502` for an unknown option of its own."""
    for i, word in enumerate(argv):
        if word in PASS_ON and argv[i + 1:i + 2] not in (["-h"], ["--help"]):
            return argv[:i + 1], argv[i + 1:]
        if word not in ("-v", "--verbose"):
            break
    return argv, None


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file=None, line=None) -> None:
    """Warnings (a stand-in model file, say) as one line for a person, not a source listing."""
    print(f"densehead: warning: {message}", file=sys.stderr)
