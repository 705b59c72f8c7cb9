"""Figure builders: traces, shapes and decimation, on real results."""
from __future__ import annotations

import cv2
import numpy as np
import plotly.graph_objects as go
import pytest
from helpers import shared_pipeline

from densehead.dashboard import figures
from densehead.dashboard.series import SeriesBuffer
from densehead.io import export
from densehead.io.table import COLUMNS


@pytest.fixture(scope="module")
def two_faces(samples):
    image = cv2.imread(str(samples / "photos" / "trump_hillary.jpg"))
    faces = shared_pipeline()(image, dense=True).faces
    assert len(faces) == 2
    for i, f in enumerate(faces):
        f.track_id = i
    return image, faces


@pytest.fixture(scope="module")
def mesh(two_faces):
    image, faces = two_faces
    return export.face_mesh(faces[0], shared_pipeline().face_model.triangles, image)


def _table(faces) -> np.ndarray:
    buf = SeriesBuffer()
    for _ in range(5):
        buf.add_frame(faces)
    return buf.snapshot()


def test_pose_figure_one_line_per_track_and_angle(two_faces):
    _, faces = two_faces
    fig = figures.pose_figure(_table(faces))
    assert len(fig.data) == 2 * 3
    names = {t.name for t in fig.data}
    assert names == {"track 0", "track 1"}
    yaw_track1 = [t for t in fig.data if t.name == "track 1" and t.yaxis == "y"][0]
    assert np.allclose(yaw_track1.y, faces[1].yaw)


def test_expression_figure_ten_lines_per_track(two_faces):
    _, faces = two_faces
    fig = figures.expression_figure(_table(faces))
    assert len(fig.data) == 20
    assert [t.name for t in fig.data if t.showlegend] == [f"exp_{i}" for i in range(10)]
    assert np.allclose(fig.data[3].y, faces[0].expression_coeffs[3])


def test_empty_series_give_empty_figures():
    empty = np.zeros((0, len(COLUMNS)))
    assert len(figures.pose_figure(empty).data) == 0
    assert len(figures.expression_figure(empty).data) == 0


def test_bar_figure(two_faces):
    _, faces = two_faces
    fig = figures.bar_figure(faces[0].shape_coeffs, "shape", "s")
    assert isinstance(fig.data[0], go.Bar) and len(fig.data[0].x) == 40 and fig.data[0].x[0] == "s0"


def test_detections_picture_boxes_every_face_and_marks_the_one_shown(two_faces):
    """The photo keeps its shape (no band around it at any width) with a box per face, the
    one shown in 3D in red, the other in green."""
    from densehead.dashboard.drawing import OTHER_BOX, SELECTED_BOX, detections_picture

    image, faces = two_faces
    picture = detections_picture(image, faces, selected=1, max_side=900)
    scale = 900 / max(image.shape[:2])
    assert picture.shape[:2] == (round(image.shape[0] * scale), round(image.shape[1] * scale))
    for i, color in ((0, OTHER_BOX), (1, SELECTED_BOX)):
        x1, y1, x2, y2 = (round(v * scale) for v in faces[i].box[:4])
        right_edge = picture[(y1 + y2) // 2, x2 - 1:x2 + 2].astype(int)   # a box line is 3 px
        assert np.abs(right_edge - color).sum(axis=1).min() < 60, (i, right_edge)
    assert not np.array_equal(picture, cv2.resize(image, picture.shape[1::-1]))


def test_mesh_figure_full_resolution(mesh):
    fig = figures.mesh_figure(mesh)
    trace = fig.data[0]
    assert isinstance(trace, go.Mesh3d)
    assert len(trace.x) == 38365 and len(trace.i) == 76073
    r, g, b = mesh.colors[0]
    assert trace.vertexcolor[0] == f"#{r:02x}{g:02x}{b:02x}"
    assert fig.layout.scene.camera.up.y == 1  # upright


def test_decimate_hits_target_and_keeps_shape_and_colour(mesh):
    small = figures.decimate(mesh, 12_000)
    assert abs(small.n_vertices - 12_000) <= 600
    assert small.triangles.max() < small.n_vertices and len(small.triangles) > 20_000
    assert np.allclose(small.vertices.min(0), mesh.vertices.min(0), atol=5)
    assert np.allclose(small.vertices.max(0), mesh.vertices.max(0), atol=5)
    assert abs(small.colors.astype(float).mean() - mesh.colors.astype(float).mean()) < 3
    # no degenerate or repeated triangles
    t = np.sort(small.triangles, axis=1)
    assert np.all((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]))
    assert len(np.unique(t, axis=0)) == len(t)
    assert figures.decimate(mesh, 10**6) is mesh


def test_mesh_figure_overlays(two_faces, mesh):
    _, faces = two_faces
    axes = figures.pose_axes(faces[0])
    fig = figures.mesh_figure(figures.decimate(mesh, 4000), export.upright(faces[0].landmarks),
                              axes, wireframe=figures.decimate(mesh, 1000))
    names = [t.name for t in fig.data]
    assert names == ["face", "wireframe", "68 landmarks", "head x", "head y", "head z"]
    assert len(fig.data[2].x) == 68
    # the head's z axis points out of the face: towards the viewer, like the nose
    assert axes.directions[2, 2] > 0.5
    assert np.allclose(np.linalg.norm(axes.directions, axis=1), 1)


def test_edges_are_unique():
    e = figures.edges(np.array([[0, 1, 2], [2, 1, 3]]))
    assert e.tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


def test_live_charts_send_what_a_plotly_figure_would(two_faces):
    """The live page's figures skip go.Figure's copies; Streamlit must still send the browser
    the JSON a real Figure gives: the same traces, typed arrays, layout and default template
    (Streamlit's, which its theme fills in)."""
    import json

    import plotly.io as pio
    import plotly.tools
    import streamlit.elements.plotly_chart  # noqa: F401  registers and selects Streamlit's template

    _, faces = two_faces
    table = _table(faces)
    assert pio.templates.default == "streamlit"
    for spec in (figures.pose_spec(table, max_points=3), figures.expression_spec(table)):
        sent = [json.loads(pio.to_json(plotly.tools.return_figure_from_figure_or_data(f, True),
                                       validate=False))
                for f in (figures.figure(spec), go.Figure(spec))]
        assert sent[0] == sent[1]
        assert sent[0]["layout"]["template"]["layout"], \
            "no template: Streamlit's theme would not apply"
        assert all(isinstance(t["y"], dict) and t["y"]["dtype"] == "f4" for t in sent[0]["data"])
        assert len(sent[0]["data"]) == len(spec["data"]) > 0


def test_longest_tracks_keeps_the_k_tracks_with_most_rows():
    """The live charts draw the longest tracks of the window; with dozens of short tracks
    (passers-by, faces found again) the browser's redraw took all of its main thread."""
    from densehead.io.table import COL

    ids = [1] * 5 + [2] * 2 + [3] * 7 + [4] * 2 + [5]
    table = np.zeros((len(ids), len(COLUMNS)), dtype=np.float32)
    table[:, COL["track_id"]] = ids
    kept, tracks = figures.longest_tracks(table, 3)
    assert tracks == 5
    assert sorted(set(kept[:, COL["track_id"]].astype(int))) == [1, 3, 4]   # 2 and 4 tie: the newer
    assert len(kept) == 5 + 7 + 2
    same, tracks = figures.longest_tracks(table, 8)
    assert tracks == 5 and same is table
    empty, tracks = figures.longest_tracks(table[:0], 3)
    assert tracks == 0 and len(empty) == 0
