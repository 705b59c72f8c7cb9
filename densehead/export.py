"""Writers (and the matching readers) for meshes and results: .obj with vertex colours, binary
.ply, .json and .csv.

Mesh coordinates are written upright: x right, y up, z towards the viewer, in pixels of the
source image (image y is negated, depth kept), so the files open the right way up in viewers.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .face import Face


@dataclass
class Mesh:
    vertices: np.ndarray            # (N, 3) float32
    triangles: np.ndarray           # (M, 3) int32, 0-based
    colors: np.ndarray | None = None  # (N, 3) uint8 RGB

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)


def vertex_colors(image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RGB uint8 of the image pixel under each point's (x, y); points outside are clamped."""
    h, w = image_bgr.shape[:2]
    x = np.clip(np.rint(points[:, 0]), 0, w - 1).astype(np.intp)
    y = np.clip(np.rint(points[:, 1]), 0, h - 1).astype(np.intp)
    if image_bgr.ndim == 2:  # grey
        return np.repeat(image_bgr[y, x][:, None], 3, axis=1).astype(np.uint8)
    return np.ascontiguousarray(image_bgr[y, x][:, 2::-1], dtype=np.uint8)  # BGR(A) -> RGB


def upright(points: np.ndarray) -> np.ndarray:
    """Image coordinates (x right, y down, depth towards the camera) -> x right, y up, z out."""
    out = np.asarray(points, dtype=np.float32)[:, :3].copy()
    out[:, 1] *= -1.0
    return out


def face_mesh(face: Face, triangles: np.ndarray, image_bgr: np.ndarray | None = None) -> Mesh:
    """The dense mesh of one face (needs face.vertices) in upright coordinates, coloured from the
    image it was found in when given."""
    if face.vertices is None:
        raise ValueError("this face has no dense vertices: run the pipeline with dense=True")
    colors = vertex_colors(image_bgr, face.vertices) if image_bgr is not None else None
    return Mesh(upright(face.vertices), np.asarray(triangles, dtype=np.int32), colors)


# --- .obj ------------------------------------------------------------------------------------

def obj_bytes(mesh: Mesh) -> bytes:
    """Wavefront OBJ; colours as the common `v x y z r g b` extension (0..1), faces 1-based."""
    buf = io.StringIO()
    buf.write(f"# densehead mesh: {mesh.n_vertices} vertices, {len(mesh.triangles)} triangles\n")
    if mesh.colors is not None:
        table = np.hstack([mesh.vertices.astype(np.float64), mesh.colors.astype(np.float64) / 255.0])
        np.savetxt(buf, table, fmt="v %.4f %.4f %.4f %.5f %.5f %.5f")
    else:
        np.savetxt(buf, mesh.vertices.astype(np.float64), fmt="v %.4f %.4f %.4f")
    np.savetxt(buf, mesh.triangles.astype(np.int64) + 1, fmt="f %d %d %d")
    return buf.getvalue().encode("ascii")


def read_obj(source: str | Path | bytes) -> Mesh:
    """Vertices (with colours when every vertex has them) and triangles of an OBJ written above
    or by other tools (polygons are fanned into triangles; `f a/b/c` forms are accepted)."""
    text = source.decode("ascii") if isinstance(source, bytes) else Path(source).read_text()
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(v) for v in parts[1:]])
        elif parts[0] == "f":
            idx = [int(p.split("/")[0]) - 1 for p in parts[1:]]
            faces.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, len(idx) - 1))
    has_color = bool(verts) and all(len(v) >= 6 for v in verts)
    arr = np.array([v[:6] if has_color else v[:3] for v in verts], dtype=np.float64).reshape(len(verts), -1)
    colors = np.rint(arr[:, 3:6] * 255).astype(np.uint8) if has_color else None
    return Mesh(arr[:, :3].astype(np.float32), np.array(faces, dtype=np.int32).reshape(-1, 3), colors)


# --- .ply ------------------------------------------------------------------------------------

def ply_bytes(mesh: Mesh) -> bytes:
    """Binary little-endian PLY: float xyz (+ uchar rgb), faces as uchar count + int indices."""
    n, m = mesh.n_vertices, len(mesh.triangles)
    header = ["ply", "format binary_little_endian 1.0", "comment densehead mesh",
              f"element vertex {n}", "property float x", "property float y", "property float z"]
    fields = [("xyz", "<f4", (3,))]
    if mesh.colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields.append(("rgb", "u1", (3,)))
    header += [f"element face {m}", "property list uchar int vertex_indices", "end_header"]
    verts = np.empty(n, dtype=fields)
    verts["xyz"] = mesh.vertices
    if mesh.colors is not None:
        verts["rgb"] = mesh.colors
    tris = np.empty(m, dtype=[("k", "u1"), ("idx", "<i4", (3,))])
    tris["k"] = 3
    tris["idx"] = mesh.triangles
    return ("\n".join(header) + "\n").encode("ascii") + verts.tobytes() + tris.tobytes()


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "<i2", "ushort": "<u2", "int": "<i4",
              "uint": "<u4", "float": "<f4", "double": "<f8", "int8": "i1", "uint8": "u1",
              "int32": "<i4", "uint32": "<u4", "float32": "<f4", "float64": "<f8"}


def read_ply(source: str | Path | bytes) -> Mesh:
    """Reads the binary little-endian triangle PLYs written by `ply_bytes` (and similar ones)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError("only binary little-endian PLY is supported")
    n_vert = n_face = 0
    props: list[tuple[str, str]] = []
    element = ""
    for line in lines:
        parts = line.split()
        if parts[:1] == ["element"]:
            element = parts[1]
            n_vert = int(parts[2]) if element == "vertex" else n_vert
            n_face = int(parts[2]) if element == "face" else n_face
        elif parts[:1] == ["property"] and element == "vertex":
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    verts = np.frombuffer(data, dtype=props, count=n_vert, offset=end)
    tris = np.frombuffer(data, dtype=[("k", "u1"), ("idx", "<i4", (3,))], count=n_face,
                         offset=end + verts.nbytes)
    if np.any(tris["k"] != 3):
        raise ValueError("only triangle faces are supported")
    xyz = np.stack([verts["x"], verts["y"], verts["z"]], axis=1).astype(np.float32)
    names = verts.dtype.names or ()
    colors = (np.stack([verts["red"], verts["green"], verts["blue"]], axis=1).astype(np.uint8)
              if "red" in names else None)
    return Mesh(xyz, tris["idx"].astype(np.int32), colors)


# --- .json / .csv ----------------------------------------------------------------------------

def faces_json(faces: Sequence[Face], with_vertices: bool = False, **meta: Any) -> str:
    """{"meta": {...}, "faces": [Face.to_dict(), ...]} as indented JSON text."""
    body = {"meta": meta, "faces": [f.to_dict(with_vertices=with_vertices) for f in faces]}
    return json.dumps(body, indent=1)


def frames_json(frames: Iterable[tuple[int, float, Sequence[Face]]], **meta: Any) -> str:
    """Per-frame results of a video: {"meta", "frames": [{"frame", "t", "faces": [...]}]}."""
    body = {"meta": meta,
            "frames": [{"frame": int(i), "t": round(float(t), 4), "faces": [f.to_dict() for f in fs]}
                       for i, t, fs in frames]}
    return json.dumps(body)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain CSV (values are numbers or simple strings, so no quoting is needed)."""
    lines = [",".join(header)]
    lines += [",".join(_cell(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def write(path: str | Path, payload: bytes | str) -> Path:
    """Write bytes or text to path (helper for the CLI and tests)."""
    path = Path(path)
    if isinstance(payload, str):
        path.write_text(payload)
    else:
        path.write_bytes(payload)
    return path


def read_csv(source: str | Path) -> tuple[list[str], np.ndarray]:
    """Header and float table of a numeric CSV written by this module or densehead.series.

    `source` is a Path or a str without a line break: the file of that name; or a str with
    line breaks: the CSV text itself (csv_text always ends its rows with one, and a file name
    never holds one, so the two cannot be confused)."""
    if isinstance(source, Path) or "\n" not in source:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such CSV file: {path}")
        source = path.read_text()
    lines = [ln for ln in source.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("the CSV is empty: no header row")
    header = lines[0].split(",")
    rows = [ln.split(",") for ln in lines[1:]]
    ragged = next((i for i, row in enumerate(rows, 2) if len(row) != len(header)), None)
    if ragged is not None:
        raise ValueError(f"CSV row {ragged} has {len(rows[ragged - 2])} values, the header "
                         f"{len(header)}")
    table = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    return header, table.reshape(-1, len(header))


def browser_mp4(src: str | Path, dst: str | Path, crf: int = 23) -> Path:
    """Re-encode a video as H.264/yuv420p MP4 (what every browser plays; OpenCV's mp4v is not)
    with PyAV, which ships libx264. Even frame sizes are required by yuv420p, so odd ones are
    cropped by a pixel."""
    import av

    dst = Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "movflags": "+faststart"}
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="rgb24")[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


__all__ = ["Mesh", "browser_mp4", "csv_text", "face_mesh", "faces_json", "frames_json", "obj_bytes", "ply_bytes",
           "read_csv", "read_obj", "read_ply", "upright", "vertex_colors", "write"]
