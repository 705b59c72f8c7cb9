"""A face's texture unwrapped into the BFM's UV space: the image a textured mesh export carries.

UV coordinates are upstream 3DDFA_V2's `BFM_UV.mat` (one (u, v) per full-BFM vertex, v up, as in
OBJ `vt`) picked at `indices.npy` (the no-neck vertices our mesh has). The layout is left-right
symmetric about u = 0.5: a vertex and its mirror vertex have u + u' = 1 and the same v, so the
mirror of texel column c is column size-1-c.

Unwrapping one face:

1. once per model and texture size (`UVAtlas`): the triangle that covers each texel centre in UV
   space and the texel's barycentric weights in it;
2. per face: the same weights on the projected vertices give each texel's image position and
   depth; the photo is sampled there bilinearly;
3. a texel is *seen* when its triangle faces the camera (projected winding) and nothing nearer
   covers it (z-buffer of the face from the C++ renderer);
4. texels not seen, or seen at a grazing angle or close to the face's outline or an occlusion
   edge in the image (where a small misfit of the model shows the background), take the mirror
   texel when that one is seen well; what is left is filled from its neighbours by push-pull.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..core.face import ms_since
from ..core.frames import as_bgr
from ..weights import assets
from ..weights.registry import INDICES_FILE, UV_FILE

if TYPE_CHECKING:
    from scipy import sparse

    from ..engine.face_model import MorphableModel

TEXTURE_SIZE = 512
# The texture's side: below 64 a face's features blur into a few texels; 8192 is the largest
# square most viewers and GPUs load.
TEXTURE_SIZE_MIN, TEXTURE_SIZE_MAX = 64, 8192

# A texel is seen well when its surface normal is this close to the view direction (cosine of
# the angle): below GRAZING_LOW its photo pixels are stretched, and the mirror side is preferred.
GRAZING_LOW, GRAZING_HIGH = 0.15, 0.45
# How far (as a fraction of the face width) a texel may lie behind the z-buffer and still count
# as the visible surface (rasterisation and float rounding).
DEPTH_TOLERANCE = 0.02
# Texels this close to the face's outline in the image (fraction of the face width) are trusted
# less: where the fitted outline overshoots the real one by a few pixels they show background.
EDGE_MARGIN = 0.03


def load_uv(uv_path: str | Path | None = None,
            indices_path: str | Path | None = None) -> np.ndarray:
    """(38365, 2) float32 (u, v) in [0, 1] for each no-neck vertex, v up. The two upstream files
    are resolved like every model file (found, or downloaded and verified) unless given."""
    from scipy.io import (
        loadmat,  # scipy is a dependency already; its MAT reader is maintained
    )

    if uv_path is None or indices_path is None:  # one message naming every missing file
        found = assets.resolve_many([UV_FILE, INDICES_FILE])
        uv_path, indices_path = uv_path or found[UV_FILE], indices_path or found[INDICES_FILE]
    full = np.asarray(loadmat(str(uv_path))["UV"], dtype=np.float64)
    indices = np.load(indices_path, allow_pickle=False)
    if full.ndim != 2 or full.shape[1] != 2 or indices.ndim != 1 or indices.max() >= len(full):
        raise ValueError(f"{uv_path} / {indices_path} do not hold the BFM texture coordinates "
                         f"(UV {full.shape}, indices {indices.shape})")
    return full[indices].astype(np.float32)


@dataclass(frozen=True, eq=False)
class UVAtlas:
    """What unwrapping needs that does not depend on the face: texel -> triangle and weights."""

    size: int
    uv: np.ndarray             # (N, 2) float32 (u, v) per vertex, v up
    triangles: np.ndarray      # (M, 3) int32
    texels: np.ndarray         # (K,) int64 flat index (row * size + col) of texels on the mesh
    texel_triangle: np.ndarray  # (K,) int32 the triangle each texel centre lies in
    interpolation: sparse.csr_matrix  # (K, N) barycentric weights: per-vertex values -> texels
    winding: int               # +1 if (v1 - v0) x (v2 - v0) points out of the face, else -1
    fit: np.ndarray            # (3, N) float32 least-squares map centred vertices -> model axes

    @property
    def n_vertices(self) -> int:
        return len(self.uv)

    @property
    def chart(self) -> np.ndarray:
        """(size, size) bool: texels whose centre lies on the mesh."""
        mask = np.zeros(self.size * self.size, dtype=bool)
        mask[self.texels] = True
        return mask.reshape(self.size, self.size)


def build_atlas(uv: np.ndarray, triangles: np.ndarray, mean_shape: np.ndarray,
                size: int = TEXTURE_SIZE) -> UVAtlas:
    """Rasterise the triangles in UV space once. `mean_shape` (N, 3) in model axes (face looking
    along +z) gives the winding and the frame that tells a mirrored projection apart."""
    check_texture_size(size)
    uv = np.asarray(uv, dtype=np.float32)
    tri = np.ascontiguousarray(triangles, dtype=np.int32)
    # texel (col c, row r) has its centre at u = (c + 0.5) / size, v = 1 - (r + 0.5) / size
    px = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1).astype(np.float64)
    texels, tri_of, weights = _rasterise(px[tri], size)
    mean = np.asarray(mean_shape, dtype=np.float64).reshape(-1, 3)
    normals = np.cross(mean[tri[:, 1]] - mean[tri[:, 0]], mean[tri[:, 2]] - mean[tri[:, 0]])
    centred = mean - mean.mean(axis=0)
    fit = np.linalg.solve(centred.T @ centred, centred.T)  # (3, N): V_c -> A with V_c ~ S_c A
    # here, not at the top: the command line reads TEXTURE_SIZE when it starts, and scipy.sparse
    # takes a tenth of a second to import
    from scipy import sparse

    k = len(texels)  # three weights per texel, on its triangle's corners
    interpolation = sparse.csr_matrix((weights.ravel(), tri[tri_of].ravel(),
                                       np.arange(0, 3 * k + 1, 3)), shape=(k, len(uv)))
    return UVAtlas(size=size, uv=uv, triangles=tri, texels=texels, texel_triangle=tri_of,
                   interpolation=interpolation,
                   winding=1 if normals[:, 2].sum() > 0 else -1, fit=fit.astype(np.float32))


def _rasterise(corners_px: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texel centres inside each (M, 3, 2) triangle (texel units): every candidate of every
    triangle's bounding box at once; a texel on a shared edge goes to the triangle it is most
    inside of."""
    eps = 1e-6
    lo = np.clip(np.ceil(corners_px.min(axis=1) - eps), 0, size).astype(np.int64)
    hi = np.clip(np.floor(corners_px.max(axis=1) + eps), -1, size - 1).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    count = span[:, 0] * span[:, 1]
    tri = np.repeat(np.arange(len(corners_px)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    x = lo[tri, 0] + k % span[tri, 0]
    y = lo[tri, 1] + k // span[tri, 0]
    a, b, c = (corners_px[tri, i] for i in range(3))
    e1, e2 = b - a, c - a
    den = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    qx, qy = x - a[:, 0], y - a[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = (qx * e2[:, 1] - qy * e2[:, 0]) / den
        w2 = (e1[:, 0] * qy - e1[:, 1] * qx) / den
    w = np.stack([1.0 - w1 - w2, w1, w2], axis=1)
    inside = np.all(w >= -1e-9, axis=1) & (den != 0)
    flat, tri, w = (y * size + x)[inside], tri[inside], w[inside]
    order = np.argsort(-w.min(axis=1), kind="stable")  # most inside first, then keep the first
    flat, tri, w = flat[order], tri[order], w[order]
    flat, first = np.unique(flat, return_index=True)
    w = np.clip(w[first], 0.0, 1.0)
    return flat, tri[first].astype(np.int32), (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def check_texture_size(size: int) -> None:
    """ValueError unless `size` is a whole number of pixels within the texture's bounds."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not TEXTURE_SIZE_MIN <= size <= TEXTURE_SIZE_MAX:
        raise ValueError(f"texture size {size!r}: must be a whole number of pixels from "
                         f"{TEXTURE_SIZE_MIN} to {TEXTURE_SIZE_MAX}")


@lru_cache(maxsize=4)
def atlas_for(model: "MorphableModel", size: int = TEXTURE_SIZE) -> UVAtlas:
    """The atlas of a loaded model (built on first use, which takes a noticeable moment, and
    kept per model and size)."""
    return build_atlas(load_uv(), model.triangles, model.mean.reshape(-1, 3), size)


@dataclass
class Texture:
    """One face unwrapped: the image and where each texel's colour came from."""

    image: np.ndarray      # (size, size, 3) uint8 BGR; row 0 is v = 1 (the top of the UV square)
    seen: np.ndarray       # (size, size) bool: sampled from the photo at the texel's own place
    mirrored: np.ndarray   # (size, size) bool: taken (wholly or in part) from the mirror texel
    filled: np.ndarray     # (size, size) bool: on the mesh, colour mostly from neighbours
    chart: np.ndarray      # (size, size) bool: texels on the mesh
    # ms per step: geometry, visibility (with zbuffer, the C++ depth map, inside it), sample, fill
    times: dict[str, float] = field(default_factory=dict)

    def fractions(self) -> dict[str, float]:
        """Share of the mesh's texels seen, mirrored and filled."""
        n = max(int(self.chart.sum()), 1)
        return {k: float((getattr(self, k) & self.chart).sum()) / n
                for k in ("seen", "mirrored", "filled")}


def unwrap(image: np.ndarray, vertices: np.ndarray, atlas: UVAtlas) -> Texture:
    """The face's texture from the photo it was found in. `vertices` (N, 3) are the face's dense
    vertices in image pixels (x, y) and depth (larger = nearer), as `Face.vertices`."""
    image = as_bgr(image)
    verts = np.asarray(vertices, dtype=np.float32)
    if verts.shape != (atlas.n_vertices, 3):
        raise ValueError(f"expected ({atlas.n_vertices}, 3) dense vertices, got {verts.shape}")
    times: dict[str, float] = {}
    start = time.perf_counter()
    normals = _outward_normals(verts, atlas)
    facing = normals[:, 2] > 0
    position, cosine = _texel_geometry(verts, normals, atlas)
    times["geometry"] = ms_since(start)

    start = time.perf_counter()
    h, w = image.shape[:2]
    inside = ((position[:, 0] >= 0) & (position[:, 0] <= w - 1)
              & (position[:, 1] >= 0) & (position[:, 1] <= h - 1))
    seen = facing[atlas.texel_triangle] & inside
    if not seen.any():
        raise ValueError("no part of this face is visible in the image")
    hidden, edge = _visibility(position[seen], verts, atlas.triangles, (h, w), times)
    # near the outline a small misfit of the model samples the background: trust less
    margin = EDGE_MARGIN * float(np.ptp(verts[:, 0]))
    trust = np.zeros(len(seen), dtype=np.float32)
    trust[seen] = _smoothstep(edge, 0.0, margin)
    seen[seen] = ~hidden
    if not seen.any():
        raise ValueError("no part of this face is visible in the image")
    times["visibility"] = ms_since(start)

    start = time.perf_counter()
    size = atlas.size
    map_x = np.full(size * size, -1.0, dtype=np.float32)
    map_y = np.full(size * size, -1.0, dtype=np.float32)
    map_x[atlas.texels], map_y[atlas.texels] = position[:, 0], position[:, 1]
    photo = cv2.remap(image, map_x.reshape(size, size), map_y.reshape(size, size),
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    times["sample"] = ms_since(start)

    start = time.perf_counter()
    colour, confidence, own, mirror = _combine_with_mirror(photo, seen, cosine, trust, atlas)
    texture = push_pull(colour, confidence)
    times["fill"] = ms_since(start)
    chart = atlas.chart
    image_out = np.clip(np.rint(texture), 0, 255).astype(np.uint8)
    return Texture(image=image_out, seen=own & chart, mirrored=mirror & chart,
                   filled=(confidence < 0.5) & chart, chart=chart, times=times)


def _outward_normals(verts: np.ndarray, atlas: UVAtlas) -> np.ndarray:
    """(M, 3) triangle normals in image axes pointing out of the face (length = 2 x area).

    The cross product of the projected edges points out of the face or into it depending on the
    model's winding and on whether the projection mirrors the face (its determinant's sign,
    read from the least-squares linear map mean shape -> these vertices)."""
    tri = atlas.triangles
    p0 = verts[tri[:, 0]]
    normals = np.cross(verts[tri[:, 1]] - p0, verts[tri[:, 2]] - p0)
    linear = atlas.fit @ (verts - verts.mean(axis=0))
    if atlas.winding * np.linalg.det(linear.astype(np.float64)) < 0:
        normals *= -1.0
    return normals


def _texel_geometry(verts: np.ndarray, normals: np.ndarray,
                    atlas: UVAtlas) -> tuple[np.ndarray, np.ndarray]:
    """Each texel's image position and depth (K, 3), and the cosine between its (smooth,
    interpolated vertex) normal and the view direction (K,)."""
    n_vert = len(verts)
    corner_of = atlas.triangles.ravel()
    vertex_normals = np.stack(
        [np.bincount(corner_of, weights=np.repeat(normals[:, c], 3), minlength=n_vert)
         for c in range(3)], axis=1).astype(np.float32)
    # one sparse product for both: far cheaper than gathering the corners
    both = atlas.interpolation @ np.hstack([verts, vertex_normals])
    position, normal = both[:, :3], both[:, 3:]
    length = np.linalg.norm(normal, axis=1)
    cosine = np.divide(normal[:, 2], length, out=np.zeros_like(length), where=length > 0)
    return position, cosine


def _visibility(position: np.ndarray, verts: np.ndarray, triangles: np.ndarray,
                image_shape: tuple[int, int],
                times: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """For texels at (K, 3) positions inside the image: hidden (behind the face's nearest
    surface) and the distance in pixels from the face's outline in the image.

    The z-buffer (drawn over the face's box only) holds depths at pixel centres; a texel lies
    between four of them, and on a steep surface their depths differ a lot. So a texel is hidden
    only when it is behind all four (plus a small tolerance): reading the nearest pixel instead
    striped the grazing jaw with false occlusions."""
    from ..render.renderer import depth_map

    h, w = image_shape
    x0 = max(int(np.floor(verts[:, 0].min())), 0)
    y0 = max(int(np.floor(verts[:, 1].min())), 0)
    x1 = min(int(np.ceil(verts[:, 0].max())), w - 1)
    y1 = min(int(np.ceil(verts[:, 1].max())), h - 1)
    shifted = np.ascontiguousarray(verts - np.array([x0, y0, 0], dtype=np.float32))
    start = time.perf_counter()
    zbuf = depth_map(y1 - y0 + 1, x1 - x0 + 1, shifted, triangles)
    times["zbuffer"] = ms_since(start)
    col = np.clip(np.floor(position[:, 0]).astype(np.intp) - x0, 0, x1 - x0)
    row = np.clip(np.floor(position[:, 1]).astype(np.intp) - y0, 0, y1 - y0)
    col1, row1 = np.minimum(col + 1, x1 - x0), np.minimum(row + 1, y1 - y0)
    # fmin skips NaN (no surface at that pixel); all four NaN stays NaN and compares False
    farthest = np.fmin(np.fmin(zbuf[row, col], zbuf[row, col1]),
                       np.fmin(zbuf[row1, col], zbuf[row1, col1]))
    tolerance = DEPTH_TOLERANCE * float(np.ptp(verts[:, 0]))
    hidden = farthest > position[:, 2] + tolerance
    distance = cv2.distanceTransform(_edges(zbuf, tolerance), cv2.DIST_L2, 3)
    return hidden, distance[row, col]


def _edges(zbuf: np.ndarray, jump: float) -> np.ndarray:
    """uint8 mask, 0 on the face's outline and on its occlusion edges, 1 elsewhere (the input
    cv2.distanceTransform measures from). Holes inside the face (the mouth, the nostrils) are
    not an outline: the lips around them fit."""
    covered = np.pad(~np.isnan(zbuf), 1).astype(np.uint8)  # the padding joins every outside part
    cv2.floodFill(covered, None, (0, 0), 2)
    mask = (covered != 2)[1:-1, 1:-1].astype(np.uint8)
    mask[_steps(zbuf, jump, axis=1) | _steps(zbuf, jump, axis=0)] = 0
    return mask


def _steps(zbuf: np.ndarray, jump: float, axis: int) -> np.ndarray:
    """Pixels on either side of a depth step along `axis`: a difference to the next pixel larger
    than `jump` and than twice the differences just before and after it. A steep but smooth
    surface (a cheek seen edge-on) changes depth by similar steps and is not an edge; the
    turned nose in front of the far cheek is."""
    d = np.abs(np.diff(zbuf, axis=axis))  # NaN where either pixel has no surface
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    padded = np.pad(d, pad, constant_values=np.nan)
    before = np.take(padded, np.arange(0, d.shape[axis]), axis=axis)
    after = np.take(padded, np.arange(2, d.shape[axis] + 2), axis=axis)
    with np.errstate(invalid="ignore"):
        step = (d > jump) & ~(d <= 2.0 * np.fmax(before, after))  # NaN neighbours: a step
    out = np.zeros(zbuf.shape, dtype=bool)
    lo = [slice(None), slice(None)]
    hi = [slice(None), slice(None)]
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    out[tuple(lo)] |= step
    out[tuple(hi)] |= step
    return out


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _combine_with_mirror(photo: np.ndarray, seen_k: np.ndarray, cosine_k: np.ndarray,
                         trust_k: np.ndarray, atlas: UVAtlas
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blend each texel's own sample with its mirror texel's: the own colour wherever it is seen
    well, the mirror's where the own one is hidden or grazing and the mirror is seen well.

    Returns colour (S, S, 3) float32; confidence (S, S) in [0, 1], which is 0 where neither side
    is seen and falls towards 0 for samples seen nearly edge-on (their photo pixels are smeared
    along the surface, so the fill from neighbours takes over); and bool masks of the texels
    that use their own and their mirror's colour."""
    size = atlas.size

    def on_grid(values: np.ndarray) -> np.ndarray:
        grid = np.zeros(size * size, dtype=np.float32)
        grid[atlas.texels] = np.where(seen_k, values, 0.0)
        return grid.reshape(size, size)

    seen = on_grid(np.ones_like(cosine_k)) > 0
    good = on_grid(_smoothstep(cosine_k, GRAZING_LOW, GRAZING_HIGH) * trust_k)  # beats the mirror
    usable = on_grid(_smoothstep(cosine_k, 0.0, GRAZING_LOW) * trust_k)         # beats a fill
    seen_m, good_m, usable_m = seen[:, ::-1], good[:, ::-1], usable[:, ::-1]
    # own share: all of it when seen well or when the mirror is no better; none when hidden
    own = np.where(seen, 1.0 - (1.0 - good) * good_m, 0.0).astype(np.float32)
    other = np.where(seen_m, 1.0 - own, 0.0).astype(np.float32)  # own + other: 1 or 0
    colour = photo.astype(np.float32)
    blended = own[..., None] * colour + other[..., None] * colour[:, ::-1]
    confidence = own * usable + other * usable_m
    return blended, confidence, own > 0, other > 0


def push_pull(colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill texels of weight 0 from ever coarser weighted averages of their neighbourhood
    (push-pull); weights between 0 and 1 blend the texel with that fill, weight 1 keeps it.
    One pass per halving: several times faster than cv2.inpaint on the same holes, which also
    drew streaks across the large ones and takes only a yes/no mask."""
    h, w = weight.shape
    if weight.min() >= 1.0 or min(h, w) <= 1:
        return colour
    small = ((w + 1) // 2, (h + 1) // 2)
    coarse_w = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    coarse_c = cv2.resize(colour * weight[..., None], small, interpolation=cv2.INTER_AREA)
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse_c = np.where(coarse_w[..., None] > 0, coarse_c / coarse_w[..., None], 0.0)
    # a coarse texel with any support is trusted as much as 4 of its fine texels
    coarse = push_pull(coarse_c.astype(np.float32), np.minimum(coarse_w * 4.0, 1.0))
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    a = weight[..., None]
    return (colour * a + up * (1.0 - a)).astype(np.float32)


__all__ = ["TEXTURE_SIZE", "TEXTURE_SIZE_MAX", "TEXTURE_SIZE_MIN", "Texture", "UVAtlas",
           "atlas_for", "build_atlas", "check_texture_size", "load_uv", "push_pull", "unwrap"]
