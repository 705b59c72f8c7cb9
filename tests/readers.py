"""Readers of what densehead writes (meshes and CSV tables), for the tests: independent of the
writers in densehead.io, so a round trip checks the files themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from densehead.io.export import Mesh


def read_obj(source: str | Path | bytes) -> Mesh:
    """Vertices (with colours when every vertex has them), triangles and, when the file gives
    every vertex one texture coordinate (`vt`, paired by `f v/vt`), the per-vertex UVs, of an
    OBJ written by densehead or by other tools (polygons are fanned into triangles)."""
    text = (source.decode() if isinstance(source, bytes)
            else Path(source).read_text(encoding="utf-8"))
    verts: list[list[float]] = []
    texcoords: list[list[float]] = []
    faces: list[list[int]] = []
    face_uv: list[list[int]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(v) for v in parts[1:]])
        elif parts[0] == "vt":
            texcoords.append(([float(v) for v in parts[1:3]] + [0.0])[:2])  # `vt u` means v = 0
        elif parts[0] == "f":
            corners = [p.split("/") for p in parts[1:]]
            idx = [_obj_index(c[0], len(verts)) for c in corners]
            uvi = [_obj_index(c[1], len(texcoords)) if len(c) > 1 and c[1] else -1
                   for c in corners]
            for i in range(1, len(idx) - 1):
                faces.append([idx[0], idx[i], idx[i + 1]])
                face_uv.append([uvi[0], uvi[i], uvi[i + 1]])
    has_color = bool(verts) and all(len(v) >= 6 for v in verts)
    arr = np.array([v[:6] if has_color else v[:3] for v in verts], dtype=np.float64).reshape(len(verts), -1)
    colors = np.rint(arr[:, 3:6] * 255).astype(np.uint8) if has_color else None
    triangles = np.array(faces, dtype=np.int32).reshape(-1, 3)
    uv = _per_vertex_uv(triangles, np.array(face_uv, dtype=np.int64).reshape(-1, 3),
                        np.array(texcoords, dtype=np.float32).reshape(-1, 2), len(verts))
    return Mesh(arr[:, :3].astype(np.float32), triangles, colors, uv)


def _obj_index(token: str, count: int) -> int:
    """0-based index of an OBJ reference (1-based, or negative = counted from the end)."""
    i = int(token)
    return i - 1 if i > 0 else count + i


def _per_vertex_uv(triangles: np.ndarray, face_uv: np.ndarray, texcoords: np.ndarray,
                   n_vertices: int) -> np.ndarray | None:
    """One UV per vertex if every corner names a vt and each vertex always names the same one
    (no UV seams, as in our files); otherwise None."""
    if (not len(texcoords) or not len(triangles) or np.any(face_uv < 0)
            or face_uv.max() >= len(texcoords)):
        return None
    choice = np.full(n_vertices, -1, dtype=np.int64)
    choice[triangles.ravel()] = face_uv.ravel()
    if np.any(choice < 0) or np.any(choice[triangles.ravel()] != face_uv.ravel()):
        return None
    return texcoords[choice]


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


def read_csv(source: str | Path) -> tuple[list[str], np.ndarray]:
    """Header and float table of a numeric CSV written by densehead.io.table.

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
