"""Writers for meshes and results: .obj with vertex colours, textured .obj (+ .mtl + .png, see
`write_textured_obj`), binary .ply and .json (the per-frame CSV is densehead.io.table's).

Mesh coordinates are written upright: x right, y up, z towards the viewer, in pixels of the
source image (image y is negated, depth kept), so the files open the right way up in viewers.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ..core.face import Face
from ..core.files import MAX_NAME_BYTES, atomic_write_all

if TYPE_CHECKING:
    from ..engine.face_model import MorphableModel
    from .texture import Texture


@dataclass
class Mesh:
    vertices: np.ndarray            # (N, 3) float32
    triangles: np.ndarray           # (M, 3) int32, 0-based
    colors: np.ndarray | None = None  # (N, 3) uint8 RGB
    uv: np.ndarray | None = None      # (N, 2) float32 texture coordinates per vertex, v up

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


def upright_triangles(triangles: np.ndarray) -> np.ndarray:
    """Triangles for `upright` vertices. Negating y mirrors the mesh, which turns every
    triangle's winding around; reversed, each triangle is counter-clockwise seen from outside the
    face again, the side viewers light and show."""
    return np.ascontiguousarray(np.asarray(triangles, dtype=np.int32)[:, ::-1])


def face_mesh(face: Face, triangles: np.ndarray, image_bgr: np.ndarray | None = None) -> Mesh:
    """The dense mesh of one face (needs face.vertices) in upright coordinates, coloured from the
    image it was found in when given."""
    if face.vertices is None:
        raise ValueError("this face has no dense vertices: run the pipeline with dense=True")
    colors = vertex_colors(image_bgr, face.vertices) if image_bgr is not None else None
    return Mesh(upright(face.vertices), upright_triangles(triangles), colors)


# --- .obj ------------------------------------------------------------------------------------

def obj_bytes(mesh: Mesh) -> bytes:
    """Wavefront OBJ; colours as the common `v x y z r g b` extension (0..1), faces 1-based."""
    buf = io.StringIO()
    buf.write(f"# densehead mesh: {mesh.n_vertices} vertices, {len(mesh.triangles)} triangles\n")
    if mesh.colors is not None:
        table = np.hstack([mesh.vertices.astype(np.float64),
                           mesh.colors.astype(np.float64) / 255.0])
        np.savetxt(buf, table, fmt="v %.4f %.4f %.4f %.5f %.5f %.5f")
    else:
        np.savetxt(buf, mesh.vertices.astype(np.float64), fmt="v %.4f %.4f %.4f")
    np.savetxt(buf, mesh.triangles.astype(np.int64) + 1, fmt="f %d %d %d")
    return buf.getvalue().encode("ascii")


def textured_obj_bytes(mesh: Mesh, mtl_name: str, material: str = "face") -> bytes:
    """Wavefront OBJ with one `vt` per vertex (same index as its `v`), faces as `f v/vt ...`
    and the material library `mtl_name` (a file name next to the .obj)."""
    if mesh.uv is None or len(mesh.uv) != mesh.n_vertices:
        raise ValueError("a textured OBJ needs one texture coordinate per vertex (mesh.uv)")
    buf = io.StringIO()
    buf.write(f"# densehead textured mesh: {mesh.n_vertices} vertices, "
              f"{len(mesh.triangles)} triangles\n")
    buf.write(f"mtllib {mtl_name}\n")
    buf.write(_rows("v %.4f %.4f %.4f\n", mesh.vertices.astype(np.float64)))
    buf.write(_rows("vt %.6f %.6f\n", mesh.uv.astype(np.float64)))
    buf.write(f"usemtl {material}\n")
    corners = np.repeat(mesh.triangles.astype(np.int64) + 1, 2, axis=1)  # v/vt share the index
    buf.write(_rows("f %d/%d %d/%d %d/%d\n", corners))
    return buf.getvalue().encode()   # UTF-8: the material library is named after the person's file


def _rows(fmt: str, table: np.ndarray) -> str:
    """`fmt` applied to every row: one % over the whole table, much faster than np.savetxt."""
    return (fmt * len(table)) % tuple(table.ravel().tolist())


def mtl_bytes(texture_name: str, material: str = "face") -> bytes:
    """A material whose colour is the texture: white under it (Ka, Kd), no specular highlight."""
    return (f"# densehead material\nnewmtl {material}\nKa 1.000 1.000 1.000\n"
            f"Kd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\nd 1.0\nillum 1\n"
            f"map_Kd {texture_name}\n").encode()   # UTF-8, as the .obj


def obj_texture_path(obj_path: str | Path) -> Path | None:
    """The image an OBJ's material library names as `map_Kd` (first one), or None."""
    obj_path = Path(obj_path)
    for line in obj_path.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if parts[:1] == ["mtllib"] and len(parts) == 2:
            mtl = obj_path.parent / parts[1].strip()
            if not mtl.is_file():
                return None
            for entry in mtl.read_text(encoding="utf-8").splitlines():
                fields = entry.split(maxsplit=1)
                if fields[:1] == ["map_Kd"] and len(fields) == 2:
                    return mtl.parent / fields[1].strip()
    return None


def textured_names(stem: str) -> tuple[str, str, str]:
    """The file names of a textured mesh: <stem>.obj, <stem>.mtl, <stem>_texture.png."""
    return f"{stem}.obj", f"{stem}.mtl", f"{stem}_texture.png"


@dataclass
class TexturedFace:
    """One face as a textured mesh: the .obj, .mtl and .png a viewer or Blender imports."""

    stem: str            # file names: <stem>.obj, <stem>.mtl, <stem>_texture.png
    mesh: Mesh           # upright vertices, triangles and per-vertex uv
    texture: "Texture"   # the unwrapped image (BGR) and where its texels came from

    @property
    def names(self) -> tuple[str, str, str]:
        return textured_names(self.stem)

    def files(self) -> dict[str, bytes]:
        """{file name: bytes} for the three files."""
        import cv2

        obj, mtl, png = self.names
        ok, encoded = cv2.imencode(".png", self.texture.image)
        if not ok:  # pragma: no cover - PNG encoding of a uint8 image does not fail
            raise RuntimeError("could not encode the texture as PNG")
        return {obj: textured_obj_bytes(self.mesh, mtl), mtl: mtl_bytes(png),
                png: encoded.tobytes()}

    def zip_bytes(self) -> bytes:
        """The three files in one zip (what the 3D viewer offers for download)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in self.files().items():
                zf.writestr(name, data)
        return buf.getvalue()

    def write(self, directory: str | Path) -> list[Path]:
        """Write the three files into `directory`; returns their paths (obj, mtl, png). All three
        or none: an .obj without its texture would open blank."""
        directory = Path(directory)
        for name in self.names:
            if (size := len(name.encode())) > MAX_NAME_BYTES:
                raise ValueError(f"{name} would be {size} bytes long, more than a file name may "
                                 f"have ({MAX_NAME_BYTES}): choose a shorter name")
        files = self.files()   # the texture, then the material naming it, then the .obj
        placed = atomic_write_all({directory / name: files[name] for name in reversed(self.names)})
        return placed[::-1]


def textured_face(face: Face, image_bgr: np.ndarray, model: "MorphableModel",
                  stem: str = "face", size: int | None = None) -> TexturedFace:
    """Unwrap one face's texture from the image it was found in (needs face.vertices; the UV
    files are resolved on first use). `size` is the texture's side (default
    texture.TEXTURE_SIZE)."""
    from . import texture

    if face.vertices is None:
        raise ValueError("this face has no dense vertices: run the pipeline with dense=True")
    size = texture.TEXTURE_SIZE if size is None else size
    texture.check_texture_size(size)
    atlas = texture.atlas_for(model, size)
    tex = texture.unwrap(image_bgr, face.vertices, atlas)
    mesh = Mesh(upright(face.vertices), upright_triangles(model.triangles), uv=atlas.uv)
    return TexturedFace(stem, mesh, tex)


def write_textured_obj(path: str | Path, face: Face, image_bgr: np.ndarray,
                       model: "MorphableModel", size: int | None = None) -> list[Path]:
    """Write `path` (.obj), the .mtl beside it and `<stem>_texture.png`; returns the three
    paths. The texture's side is `size` (default texture.TEXTURE_SIZE)."""
    path = Path(path)
    if path.suffix.lower() != ".obj":
        raise ValueError(f"the textured mesh is written as .obj, got {path.name!r}")
    return textured_face(face, image_bgr, model, stem=path.stem, size=size).write(path.parent)


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


# --- .json ----------------------------------------------------------------------------------

def faces_json(faces: Sequence[Face], with_vertices: bool = False, **meta: Any) -> str:
    """{"meta": {...}, "faces": [Face.to_dict(), ...]} as indented JSON text."""
    body = {"meta": meta, "faces": [f.to_dict(with_vertices=with_vertices) for f in faces]}
    return json.dumps(body, indent=1)


def frames_json(frames: Iterable[tuple[int, float, Sequence[Face]]], **meta: Any) -> str:
    """Per-frame results of a video: {"meta", "frames": [{"frame", "t", "faces": [...]}]}."""
    body = {"meta": meta,
            "frames": [{"frame": int(i), "t": round(float(t), 4),
                        "faces": [f.to_dict() for f in fs]} for i, t, fs in frames]}
    return json.dumps(body)


__all__ = ["Mesh", "TexturedFace", "face_mesh", "faces_json", "frames_json", "mtl_bytes",
           "obj_bytes", "obj_texture_path", "ply_bytes", "textured_face", "textured_obj_bytes",
           "upright", "upright_triangles", "vertex_colors", "write_textured_obj"]
