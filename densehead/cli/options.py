"""The options every command that runs the pipeline or the tracker shares: one flag per field of
PipelineOptions / TrackerOptions, defaults taken from those dataclasses."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..core.errors import OptionsError
from ..core.files import same_file
from ..core.options import (
    AUTO,
    DEFAULT_FLOAT_REGRESSOR,
    REGRESSOR_NAMES,
    TURN_AFTER_TILT,
    PipelineOptions,
    TrackerOptions,
)

if TYPE_CHECKING:
    from ..engine.pipeline import Pipeline

_P, _T = PipelineOptions(), TrackerOptions()
# option field -> the flag that sets it, so an error names what the user typed
FLAGS = {"regressor": "--regressor", "num_threads": "--threads", "score_threshold": "--threshold",
         "max_faces": "--max-faces", "roi_shift": "--roi-shift", "roi_scale": "--roi-scale",
         "redetect_every": "--redetect-every", "min_cutoff": "--min-cutoff", "beta": "--beta",
         "max_frames": "--max-frames", "overlay": "--overlay"}


def _on(default: bool) -> str:
    return "on" if default else "off"


def add_pipeline_options(p: argparse.ArgumentParser, threads: int = _P.num_threads) -> None:
    """`threads`: the --threads default (batch workers run one TFLite thread each)."""
    g = p.add_argument_group("pipeline")
    g.add_argument("--regressor", default=_P.regressor, choices=(AUTO, *REGRESSOR_NAMES),
                   help=f"regressor network (default {_P.regressor}: the faster "
                        f"{DEFAULT_FLOAT_REGRESSOR} graph on this CPU, int8 only where it is "
                        "faster)")
    g.add_argument("--threads", type=int, default=threads,
                   help=f"TFLite threads (default {threads}; with 2 or more, each call runs on "
                        "1 thread or on these, whichever has been faster lately)")
    g.add_argument("--fixed-threads", action="store_true",
                   help="run every call on --threads threads")
    g.add_argument("--threshold", type=float, default=_P.score_threshold,
                   help=f"face detection score threshold, (0, 1] (default {_P.score_threshold})")
    g.add_argument("--max-faces", type=int, default=_P.max_faces,
                   help=f"at most this many faces per frame (default {_P.max_faces})")
    g.add_argument("--roi-shift", type=float, default=_P.roi_shift,
                   help=f"box -> crop: centre shift down, in box sizes (default {_P.roi_shift})")
    g.add_argument("--roi-scale", type=float, default=_P.roi_scale,
                   help=f"box -> crop: side, in box sizes (default {_P.roi_scale})")
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=_P.refine,
                   help="second pass on the crop the first pass's landmarks give "
                        f"(default {_on(_P.refine)})")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=_P.flip_average,
                   help=f"also run the mirrored crop and average (default {_on(_P.flip_average)})")
    g.add_argument("--mirror-fallback", action=argparse.BooleanOptionalAction,
                   default=_P.mirror_fallback,
                   help="when the detector finds no face, look at the mirrored frame too "
                        f"(default {_on(_P.mirror_fallback)})")
    g.add_argument("--rotated-fallback", action=argparse.BooleanOptionalAction,
                   default=_P.rotated_fallback,
                   help="faces lying sideways: when that finds none either, look at the frame "
                        "turned by 90 degrees each way; fit a face tilted past "
                        f"{TURN_AFTER_TILT:g} degrees in the frame turned the way it stands "
                        f"upright (default {_on(_P.rotated_fallback)})")


def add_tracker_options(p: argparse.ArgumentParser, smoothing_switch: bool = True) -> None:
    g = p.add_argument_group("video tracking")
    g.add_argument("--redetect-every", type=int, default=_T.redetect_every,
                   help=f"run the detector every N frames, and when a track is lost "
                        f"(default {_T.redetect_every})")
    if smoothing_switch:
        g.add_argument("--no-smooth", action="store_true", help="no temporal smoothing")
    g.add_argument("--min-cutoff", type=float, default=_T.min_cutoff,
                   help=f"One Euro cut-off when still, Hz (default {_T.min_cutoff})")
    g.add_argument("--beta", type=float, default=_T.beta,
                   help=f"One Euro speed coefficient (default {_T.beta})")


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    """Raises a ValueError naming the flag (one line on stderr) for values out of range."""
    try:
        return PipelineOptions(regressor=args.regressor, num_threads=args.threads,
                               adapt_threads=not args.fixed_threads,
                               score_threshold=args.threshold, max_faces=args.max_faces,
                               roi_shift=args.roi_shift, roi_scale=args.roi_scale,
                               refine=args.refine, flip_average=args.flip,
                               mirror_fallback=args.mirror_fallback,
                               rotated_fallback=args.rotated_fallback)
    except OptionsError as error:
        raise flag_error(error) from None


def tracker_options(args: argparse.Namespace) -> TrackerOptions:
    try:
        return TrackerOptions(redetect_every=args.redetect_every,
                              smoothing=not getattr(args, "no_smooth", False),
                              min_cutoff=args.min_cutoff, beta=args.beta)
    except OptionsError as error:
        raise flag_error(error) from None


def flag_error(error: OptionsError) -> ValueError:
    flag = FLAGS.get(error.name, error.name)
    return ValueError(str(error).replace(error.name, flag, 1))


def make_pipeline(args: argparse.Namespace) -> "Pipeline":
    from ..engine.pipeline import Pipeline

    return Pipeline(pipeline_options(args))


def regressor_line(pipe: "Pipeline") -> str:
    """Which regressor graph ran and why (for "auto": what this CPU made it choose), for the
    output of commands whose figures depend on it."""
    choice = pipe.regressor_choice
    return f"regressor: {choice.name} ({choice.reason})"


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); anything else is a ValueError the CLI prints as one line."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        w, h = (int(p) for p in parts)
        if w > 0 and h > 0:
            return w, h
    raise ValueError(f"--resize needs WIDTHxHEIGHT in whole pixels above 0, e.g. 640x480 "
                     f"(got {text!r})")


def check_output_file(flag: str, target: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an output named by `flag` that is one of the `inputs` (also
    through a link), is a folder, or lies in a folder that does not exist (a ValueError: one
    line on stderr)."""
    if any(same_file(target, source) for source in inputs):
        raise ValueError(f"{flag} {target} is the input file itself: choose another name "
                         "(the input would be overwritten)")
    if target.is_dir():
        raise ValueError(f"{flag} {target} is a folder: give a file name")
    if not target.parent.is_dir():
        raise ValueError(f"{flag} {target}: the folder {target.parent} does not exist")


def check_count(flag: str, value: int) -> None:
    """A count where 0 means "all": a negative one is a ValueError naming its flag."""
    if value < 0:
        raise ValueError(f"{flag} must be 0 or more (0: all), got {value}")


def check_video(source: Path) -> None:
    """VideoError unless `source` opens as a video; a file that is not named as one is called
    neither picture nor video (it was not taken for a picture either). What is not a file (a
    folder, a device) keeps the reader's own words."""
    from ..core.errors import VideoError
    from ..io.image import FORMATS
    from ..io.video import VIDEO_SUFFIXES, probe

    try:
        probe(source)
    except VideoError:
        if source.suffix.lower() in VIDEO_SUFFIXES or not source.is_file():
            raise
        raise VideoError(f"{source.name} is neither a picture nor a video that can be read "
                         f"(pictures: {FORMATS}; videos: MP4/H.264, AVI, MOV, ...)") from None
