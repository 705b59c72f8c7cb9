"""Plotly figure builders for the dashboard: pose / expression time series, bar charts and the
3D mesh viewer (with a display-side decimation).

Pure functions of numpy data -> plotly Figure; no Streamlit here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from _plotly_utils.utils import convert_to_base64

from ..core.face import Face
from ..engine import crop
from ..io.export import Mesh, upright
from ..io.table import COL, EXPRESSION, POSE, split_tracks

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
AXIS_COLORS = ("#e41a1c", "#4daf4a", "#377eb8")  # head x, y, z (z = the way the face looks)
FULL_VERTICES = 38_365
POSE_HEIGHT, EXPRESSION_HEIGHT = 420, 320   # px: three rows of pose, one of expression
MESH_HEIGHT = 600   # px
# The 3D scene's box as Plotly's aspect ratios, the camera 1.8 away: what the camera sees of it
# at most TALLEST high (a frontal face's height, as Plotly's own "data" aspect drew it) and
# WIDEST wide, so that a turned face with its pose axes fits a plot MESH_NARROWEST as wide as it
# is tall. Plotly fixes the vertical field of view: a narrower plot cuts the scene's sides.
SCENE_TALLEST, SCENE_WIDEST = 1.1, 0.9
MESH_NARROWEST = 0.7
# The camera's distance in aspect-ratio units for its perspective, fitted to what Plotly drew
# (Plotly scales its box its own way): a head's z axis turned 33° drew 0.8 as long as its x axis,
# where with no perspective it would be 0.65
EYE_DISTANCE = 3.5


def track_color(track_id: int) -> str:
    return PALETTE[int(track_id) % len(PALETTE)]


# --- time series -------------------------------------------------------------------------------
# Built as plain Plotly specs (dicts of numpy arrays): the live page redraws them every second,
# and building them through graph objects (make_subplots, add_trace, update_layout: validation of
# every property) cost tens of milliseconds of server CPU per redraw. `figure(spec)` wraps a spec
# for st.plotly_chart; the video page draws once, so it keeps the validated go.Figure.

POSE_DOMAINS = ((0.6934, 1.0), (0.3467, 0.6533), (0.0, 0.3066))  # three rows, 0.04 apart
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def pose_spec(table: np.ndarray, height: int = POSE_HEIGHT, max_points: int | None = None) -> dict:
    """Yaw, pitch and roll (degrees) against time: one row per angle (y, y2, y3 sharing the
    bottom x axis), one line per track. `max_points` thins each line for display."""
    data = []
    for tid, rows in split_tracks(table).items():
        rows = thin(rows, max_points)
        for r, name in enumerate(POSE, start=1):
            data.append(dict(
                type="scatter", x=_f32(rows[:, COL["time_s"]]), y=_f32(rows[:, COL[name]]),
                mode="lines", name=f"track {tid}", legendgroup=f"track {tid}", showlegend=r == 1,
                line=dict(color=track_color(tid), width=2), xaxis=_axis("x", r), yaxis=_axis("y", r)))
    layout: dict = _compact_layout(height)
    for r, (name, domain) in enumerate(zip(POSE, POSE_DOMAINS), start=1):
        bottom = r == len(POSE)
        layout[_axis("xaxis", r)] = dict(anchor=_axis("y", r), showticklabels=bottom,
                                         **({"title": {"text": "time (s)"}} if bottom else {"matches": "x3"}))
        layout[_axis("yaxis", r)] = dict(domain=list(domain), anchor=_axis("x", r),
                                         title={"text": f"{name} (deg)"})
    return {"data": data, "layout": layout}


def expression_spec(table: np.ndarray, height: int = EXPRESSION_HEIGHT, max_points: int | None = None) -> dict:
    """The 10 expression coefficients against time: one colour per coefficient (one legend
    entry each), one dash style per track (solid, dash, dot, … in track order)."""
    data = []
    for n, (tid, rows) in enumerate(split_tracks(table).items()):
        rows = thin(rows, max_points)
        t = _f32(rows[:, COL["time_s"]])
        for i, name in enumerate(EXPRESSION):
            data.append(dict(
                type="scatter", x=t, y=_f32(rows[:, COL[name]]), mode="lines", name=name,
                legendgroup=name, showlegend=n == 0,
                hovertemplate=f"track {tid} {name}: %{{y:.3f}}<extra></extra>",
                line=dict(color=PALETTE[i], width=1.5, dash=DASHES[n % len(DASHES)])))
    layout = _compact_layout(height)
    layout.update(xaxis={"title": {"text": "time (s)"}}, yaxis={"title": {"text": "coefficient"}})
    return {"data": data, "layout": layout}


def longest_tracks(table: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The rows of the `k` tracks with the most rows in `table` (of equal ones, the newer), and
    how many tracks there were. The charts draw lines per track: passers-by and faces found
    again after a miss make dozens of tracks, a legend longer than a phone's screen, and on the
    live page every line is redrawn by Plotly on the browser's main thread, which the webcam
    component and every control share."""
    if len(table) == 0:
        return table, 0
    ids = table[:, COL["track_id"]].astype(int)
    tracks, counts = np.unique(ids, return_counts=True)
    if len(tracks) <= k:
        return table, len(tracks)
    keep = tracks[np.lexsort((tracks, counts))[::-1][:k]]   # by count, then by id, largest first
    return table[np.isin(ids, keep)], len(tracks)


def pose_figure(table: np.ndarray, height: int = POSE_HEIGHT) -> go.Figure:
    return go.Figure(pose_spec(table, height))


def expression_figure(table: np.ndarray, height: int = EXPRESSION_HEIGHT) -> go.Figure:
    return go.Figure(expression_spec(table, height))


class SpecFigure(go.Figure):
    """A spec built by this module, handed to st.plotly_chart as the dict Plotly would make of
    it. st.plotly_chart turns a Figure into that dict with `to_dict()` and uses nothing else of
    the object; a real go.Figure first deep-copies Plotly's default template into itself and
    `to_dict` deep-copies everything again: most of the live panel's server CPU. So this
    Figure is one in name only: its own `__init__` keeps the finished dict (the default
    template as Plotly would add it, the numpy arrays as Plotly's typed arrays), `to_dict`
    returns it, and nothing else of go.Figure may be used on it. The tests check that the JSON
    sent is the real Figure's. Only for specs written here."""

    def __init__(self, spec: dict) -> None:   # deliberately not go.Figure's (see above)
        layout = dict(spec.get("layout", {}))
        template = _default_template()
        if template is not None and "template" not in layout:
            layout = {"template": template, **layout}
        data = [dict(trace) for trace in spec["data"]]
        convert_to_base64(data)   # numpy arrays -> typed arrays, Plotly's own step in to_dict
        self._spec = {"data": data, "layout": layout}

    def to_dict(self) -> dict:
        return self._spec


def figure(spec: dict) -> go.Figure:
    """The live page's charts: `spec` for st.plotly_chart, without a Plotly Figure's copies."""
    return SpecFigure(spec)


def _default_template() -> dict | None:
    """Plotly's default template (Streamlit registers and selects its own) as JSON, made once
    per template name."""
    import plotly.io as pio

    name = pio.templates.default
    if name is None:
        return None
    if not isinstance(name, str):
        return name.to_plotly_json()
    return _template_json(name)


@functools.lru_cache(maxsize=4)
def _template_json(name: str) -> dict:
    import plotly.io as pio

    return pio.templates[name].to_plotly_json()


def thin(rows: np.ndarray, max_points: int | None) -> np.ndarray:
    """Every k-th row so that at most max_points remain, always keeping the newest."""
    if max_points is None or len(rows) <= max_points:
        return rows
    step = -(-len(rows) // max_points)
    return rows[::-1][::step][::-1]


def _f32(values: np.ndarray) -> np.ndarray:
    # float32 is plenty for seconds, degrees and coefficients, and halves what goes to the browser
    return np.ascontiguousarray(values, dtype=np.float32)


def _axis(kind: str, row: int) -> str:
    return kind if row == 1 else f"{kind}{row}"


def _compact_layout(height: int) -> dict:
    # uirevision keeps the user's zoom/legend toggles across the periodic refreshes
    return dict(height=height, margin=dict(l=40, r=10, t=30, b=30), uirevision="live",
                legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))


def bar_figure(values: np.ndarray, title: str, prefix: str, height: int = 260) -> go.Figure:
    """Coefficients as bars (index on x); positive and negative coloured apart."""
    values = np.asarray(values, dtype=float).ravel()
    colors = np.where(values >= 0, "#1f77b4", "#d62728")
    fig = go.Figure(go.Bar(x=[f"{prefix}{i}" for i in range(len(values))], y=values,
                           marker_color=list(colors)))
    fig.update_layout(title=title, height=height, margin=dict(l=40, r=10, t=40, b=30))
    return fig


# --- the 3D viewer ------------------------------------------------------------------------------

def decimate(mesh: Mesh, target: int) -> Mesh:
    """Vertex clustering on a uniform grid: vertices in one cell merge into their mean (colours
    too), triangles are re-indexed, degenerate and duplicate triangles dropped. The cell size is
    searched so that about `target` vertices remain. Keeps the silhouette and colours; loses
    detail below the cell size, which is fine for an on-screen preview."""
    if target >= mesh.n_vertices:
        return mesh
    pts = mesh.vertices.astype(np.float64)
    lo, span = pts.min(axis=0), np.ptp(pts, axis=0).max()
    small, big = span / 4000, span  # cell sizes bracketing the target
    for _ in range(20):
        cell = np.sqrt(small * big)
        n = len(np.unique(_cells(pts, lo, cell), axis=0))
        small, big = (cell, big) if n > target else (small, cell)
    _, inverse = np.unique(_cells(pts, lo, big), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    count = np.bincount(inverse).astype(np.float64)
    verts = np.stack([np.bincount(inverse, pts[:, k]) for k in range(3)], axis=1) / count[:, None]
    colors = None
    if mesh.colors is not None:
        colors = np.stack([np.bincount(inverse, mesh.colors[:, k].astype(np.float64))
                           for k in range(3)], axis=1) / count[:, None]
        colors = np.rint(colors).astype(np.uint8)
    tris = inverse[mesh.triangles]
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[keep]
    _, first = np.unique(np.sort(tris, axis=1), axis=0, return_index=True)
    return Mesh(verts.astype(np.float32), tris[np.sort(first)].astype(np.int32), colors)


def _cells(pts: np.ndarray, lo: np.ndarray, cell: float) -> np.ndarray:
    return np.floor((pts - lo) / cell).astype(np.int64)


def edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) of a triangle list."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


@dataclass
class PoseAxes:
    origin: np.ndarray      # (3,) upright coordinates
    directions: np.ndarray  # (3, 3) rows: head x, y, z as unit vectors, upright coordinates
    length: float


def pose_axes(face: Face) -> PoseAxes:
    """The head's own axes as the estimated camera maps them into the image (columns of the
    frame-space camera), turned upright like the mesh; drawn from the nose tip (landmark 30) so
    that they are not hidden inside the head."""
    cam = crop.image_camera(face.camera, face.roi)[:, :3]
    dirs = upright(cam.T)  # row k = image-space image of model axis k, y flipped
    dirs = dirs / np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-9)
    lm = upright(face.landmarks)
    length = 0.5 * float(np.ptp(lm[:, 0]))
    return PoseAxes(lm[30], dirs, length)


def mesh_figure(mesh: Mesh, landmarks: np.ndarray | None = None, axes: PoseAxes | None = None,
                wireframe: Mesh | None = None, revision: int = 0,
                height: int = MESH_HEIGHT) -> go.Figure:
    """Mesh3d lit and coloured per vertex; optional wireframe (edges of `wireframe`), the 68
    landmarks and pose axes, all in upright coordinates centred on the mesh. `revision`
    changes the uirevision: bump it to reset the camera."""
    centre = mesh.vertices.mean(axis=0)
    v = mesh.vertices - centre
    tri = mesh.triangles
    colors = ([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in mesh.colors.tolist()]
              if mesh.colors is not None else None)
    fig = go.Figure(go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=tri[:, 0], j=tri[:, 1], k=tri[:, 2],
        vertexcolor=colors, color=None if colors else "#d9b8a0", name="face",
        flatshading=False, hoverinfo="skip",
        lighting=dict(ambient=0.55, diffuse=0.65, specular=0.12, roughness=0.6, fresnel=0.05),
        lightposition=dict(x=0, y=5e4, z=1e5)))
    if wireframe is not None:
        fig.add_trace(_wire_trace(wireframe, centre))
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float32) - centre
        fig.add_trace(go.Scatter3d(x=lm[:, 0], y=lm[:, 1], z=lm[:, 2] + 1.0, mode="markers",
                                   marker=dict(size=3, color="#00ff66"), name="68 landmarks"))
    extent = [v]
    if axes is not None:
        for k, name in enumerate(("head x", "head y", "head z")):
            a = axes.origin - centre
            b = a + axes.length * axes.directions[k]
            extent.append(np.stack([a, b]))
            fig.add_trace(go.Scatter3d(x=[a[0], b[0]], y=[a[1], b[1]], z=[a[2], b[2]],
                                       mode="lines", line=dict(color=AXIS_COLORS[k], width=8),
                                       name=name))
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=0, b=0), uirevision=f"mesh-{revision}",
        scene=dict(**_scene_box(np.concatenate(extent)),
                   camera=dict(eye=dict(x=0, y=0, z=1.8), up=dict(x=0, y=1, z=0)),
                   uirevision=f"mesh-{revision}"),
        legend=dict(orientation="h", y=0.0))
    return fig


def _scene_box(points: np.ndarray) -> dict:
    """The scene's hidden axes ranged around `points` (with Plotly's own margin of 1/32 a side)
    and its box's shape: the data's proportions, scaled so that what the camera sees of them
    fits SCENE_TALLEST by SCENE_WIDEST."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = np.maximum(hi - lo, 1e-6) / 32
    lo, hi = lo - margin, hi + margin
    size = hi - lo
    unit = max(size[0] / SCENE_WIDEST, size[1] / SCENE_TALLEST, size[2] / SCENE_TALLEST)
    seen = _seen_extent(points, (lo + hi) / 2, unit) + 2 * margin[:2]
    unit = max(seen[0] / SCENE_WIDEST, seen[1] / SCENE_TALLEST, size[2] / SCENE_TALLEST)
    box = dict(aspectmode="manual", aspectratio=dict(zip("xyz", (size / unit).tolist())))
    for k, axis in enumerate(("xaxis", "yaxis", "zaxis")):
        box[axis] = dict(visible=False, showbackground=False,
                         range=[float(lo[k]), float(hi[k])])
    return box


def _seen_extent(points: np.ndarray, centre: np.ndarray, unit: float) -> np.ndarray:
    """Width and height of `points` as the front camera's perspective draws them, in data
    units: what comes towards the camera (the nose, the head's z axis) is drawn larger."""
    nearer = (points[:, 2] - centre[2]) / unit
    grown = (points[:, :2] - centre[:2]) * (EYE_DISTANCE / (EYE_DISTANCE - nearer))[:, None]
    return grown.max(axis=0) - grown.min(axis=0)


def _wire_trace(mesh: Mesh, centre: np.ndarray) -> go.Scatter3d:
    e = edges(mesh.triangles)
    v = mesh.vertices - centre
    # one polyline with NaN breaks: a single trace is far cheaper than one per edge
    seg = np.full((len(e), 3, 3), np.nan, dtype=np.float32)
    seg[:, 0], seg[:, 1] = v[e[:, 0]], v[e[:, 1]]
    seg[:, :2, 2] += 0.5  # just in front of the surface so the lines are not hidden by it
    seg = seg.reshape(-1, 3)
    return go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines",
                        line=dict(color="rgba(20,20,20,0.6)", width=1), name="wireframe",
                        hoverinfo="skip", connectgaps=False)


__all__ = ["DASHES", "FULL_VERTICES", "MESH_HEIGHT", "MESH_NARROWEST", "PoseAxes", "bar_figure",
           "decimate", "edges", "expression_figure", "expression_spec", "figure", "longest_tracks",
           "mesh_figure", "pose_axes", "pose_figure", "pose_spec", "thin", "track_color"]
