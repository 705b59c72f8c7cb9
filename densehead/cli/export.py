"""`densehead export -f PHOTO|VIDEO -o face.obj`: textured meshes (.obj + .mtl + texture .png)
for Blender and other viewers; and `densehead benchmark-texture`, the unwrap's timing table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import same_file
from ..io.texture import TEXTURE_SIZE
from ..tools.samples import sample
from .options import (
    add_pipeline_options,
    check_output_file,
    check_video,
    make_pipeline,
    pipeline_options,
)


def add_cli(sub: Any) -> None:
    p = sub.add_parser("export", help="textured mesh (.obj + .mtl + _texture.png) of each face")
    p.add_argument("-f", "--file", required=True, help="input image or video")
    p.add_argument("-o", "--output", help="output .obj (default: INPUT.obj); several faces give "
                                          "NAME_0.obj, NAME_1.obj, ...")
    p.add_argument("--face", type=int, help="only this face (0 = the detector's best)")
    p.add_argument("--frame", type=int, default=0, help="video: the frame to use (default 0)")
    p.add_argument("--size", type=int, default=TEXTURE_SIZE,
                   help=f"texture side in pixels (default {TEXTURE_SIZE})")
    add_pipeline_options(p)
    p.set_defaults(func=run_export)

    b = sub.add_parser("benchmark-texture", help="time the texture unwrap (medians per step)")
    b.add_argument("photos", nargs="*", type=Path,
                   default=[sample("photos", "JianzhuGuo.jpg")],
                   help="photos to unwrap the first face of (default: a sample photo)")
    sizes = [TEXTURE_SIZE, 2 * TEXTURE_SIZE]  # the export's default and one twice as large
    b.add_argument("--size", type=int, nargs="+", default=sizes,
                   help=f"texture sides to time (default {' '.join(map(str, sizes))})")
    b.add_argument("--repeats", type=int, default=15, help="timed calls per step (default 15)")
    b.set_defaults(func=run_benchmark)


def run_export(args: argparse.Namespace) -> int:
    from ..io import export

    source = Path(args.file)
    output = Path(args.output) if args.output else source.with_suffix(".obj")
    _check(args, source, output)
    pipeline_options(args)  # option errors before anything is loaded
    image = _read_frame(source, args.frame)
    pipe = make_pipeline(args)
    faces = pipe(image, dense=True).faces
    if not faces:
        raise ValueError(f"no face found in {source}" + (f" (frame {args.frame})" if args.frame else ""))
    if args.face is not None:
        if not 0 <= args.face < len(faces):
            raise ValueError(f"--face {args.face}: {source} has {len(faces)} face(s), numbered "
                             f"0 to {len(faces) - 1}")
        chosen = [(output, faces[args.face])]
    elif len(faces) == 1:
        chosen = [(output, faces[0])]
    else:
        chosen = [(output.with_name(f"{output.stem}_{i}.obj"), f) for i, f in enumerate(faces)]
    _refuse_overwriting(source, output, [path for path, _ in chosen])
    for path, face in chosen:
        written = export.write_textured_obj(path, face, image, pipe.face_model, size=args.size)
        print("wrote " + ", ".join(str(w) for w in written))
    return 0


def _check(args: argparse.Namespace, source: Path, output: Path) -> None:
    from ..io.texture import TEXTURE_SIZE_MAX, TEXTURE_SIZE_MIN

    if output.suffix.lower() != ".obj":
        raise ValueError(f"-o {output}: the mesh is written as .obj (with .mtl and _texture.png)")
    check_output_file("-o", output, [source])
    if args.frame < 0:
        raise ValueError(f"--frame {args.frame}: must be 0 or more")
    if not TEXTURE_SIZE_MIN <= args.size <= TEXTURE_SIZE_MAX:
        raise ValueError(f"--size {args.size}: must be between {TEXTURE_SIZE_MIN} and "
                         f"{TEXTURE_SIZE_MAX}")


def _refuse_overwriting(source: Path, output: Path, objs: list[Path]) -> None:
    """Refuse, before anything is written, when one of the files written beside an .obj (its
    .mtl, its texture, another face's) is the input itself."""
    from ..io.export import textured_names

    for obj in objs:
        for name in textured_names(obj.stem):
            if same_file(obj.with_name(name), source):
                raise ValueError(f"-o {output}: it would write {obj.with_name(name)}, the input "
                                 "file itself: choose another name")


def _read_frame(source: Path, index: int) -> np.ndarray:
    from ..core.errors import VideoError
    from ..io.image import read_image
    from ..io.video import is_image_file, iter_frames

    if is_image_file(source):
        if index:
            raise ValueError(f"--frame {index}: {source} is a photo (it has frame 0 only)")
        return read_image(source)
    check_video(source)
    count = 0
    for count, frame in enumerate(iter_frames(source, max_frames=index + 1), start=1):
        if count == index + 1:
            return frame
    raise VideoError(f"--frame {index}: {source.name} has only {count} frame(s)")


def run_benchmark(args: argparse.Namespace) -> int:
    from ..io.texture import TEXTURE_SIZE_MAX, TEXTURE_SIZE_MIN
    from ..tools import texture_bench

    if args.repeats < 1 or any(not TEXTURE_SIZE_MIN <= s <= TEXTURE_SIZE_MAX for s in args.size):
        print(f"densehead: error: --repeats must be >= 1 and --size between {TEXTURE_SIZE_MIN} "
              f"and {TEXTURE_SIZE_MAX}", file=sys.stderr)
        return 1
    return texture_bench.run(args.photos, args.size, args.repeats)
