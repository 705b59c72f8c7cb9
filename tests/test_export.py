"""Mesh and result writers: what is written reads back the same (real face, real photo)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import shared_pipeline
from readers import read_csv, read_obj, read_ply

from densehead.core.errors import VideoError
from densehead.io import export, table


@pytest.fixture(scope="module")
def photo_face(samples):
    image = cv2.imread(str(samples / "photos" / "JianzhuGuo.jpg"))
    faces = shared_pipeline()(image, dense=True).faces
    assert faces
    return image, faces[0]


@pytest.fixture(scope="module")
def mesh(photo_face):
    image, face = photo_face
    return export.face_mesh(face, shared_pipeline().face_model.triangles, image)


def test_face_mesh_is_upright_and_coloured_from_the_photo(photo_face, mesh):
    image, face = photo_face
    assert mesh.vertices.shape == (38365, 3) and mesh.triangles.shape == (76073, 3)
    assert np.allclose(mesh.vertices[:, 1], -face.vertices[:, 1])
    # the nose tip (landmark 30) is above the chin (landmark 8) once y points up
    lm = export.upright(face.landmarks)
    assert lm[30, 1] > lm[8, 1]
    x, y = np.rint(face.vertices[123, :2]).astype(int)
    assert mesh.colors[123].tolist() == image[y, x, ::-1].tolist()  # BGR photo -> RGB colours


def outward(mesh: export.Mesh) -> np.ndarray:
    """The unit sum of the triangles' normals by their winding (counter-clockwise = front): for
    an open face mask, its outer side's direction."""
    v = mesh.vertices.astype(np.float64)[mesh.triangles]
    total = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).sum(axis=0)
    return total / np.linalg.norm(total)


def test_exported_meshes_show_their_outer_side_to_the_viewer(photo_face, mesh):
    # A viewer lights and shows the counter-clockwise side of each triangle; a frontal face
    # seen from the camera (+z once upright) must show that side, or it renders inside out.
    image, face = photo_face
    textured = export.textured_face(face, image, shared_pipeline().face_model)
    for exported in (mesh, textured.mesh):
        assert outward(exported)[2] > 0.8


def test_obj_round_trip_keeps_vertices_triangles_and_colours(mesh, tmp_path):
    path = tmp_path / "face.obj"
    path.write_bytes(export.obj_bytes(mesh))
    back = read_obj(path)
    assert back.n_vertices == mesh.n_vertices
    assert np.array_equal(back.triangles, mesh.triangles)
    assert np.allclose(back.vertices, mesh.vertices, atol=1e-3)
    assert np.array_equal(back.colors, mesh.colors)


def test_ply_round_trip_keeps_vertices_triangles_and_colours(mesh, tmp_path):
    path = tmp_path / "face.ply"
    path.write_bytes(export.ply_bytes(mesh))
    back = read_ply(path)
    assert back.n_vertices == mesh.n_vertices
    assert np.array_equal(back.triangles, mesh.triangles)
    assert np.array_equal(back.vertices, mesh.vertices)
    assert np.array_equal(back.colors, mesh.colors)


def test_ply_header_is_standard(mesh):
    head = export.ply_bytes(mesh)[:400].split(b"end_header")[0].decode()
    assert "element vertex 38365" in head and "element face 76073" in head
    assert "property uchar red" in head


def test_json_holds_pose_and_coefficients(photo_face):
    _, face = photo_face
    body = json.loads(export.faces_json([face], source="JianzhuGuo.jpg"))
    assert body["meta"]["source"] == "JianzhuGuo.jpg"
    got = body["faces"][0]
    assert got["yaw"] == pytest.approx(face.yaw) and len(got["expression"]) == 10
    assert len(got["shape"]) == 40 and len(got["landmarks"]) == 68


def test_table_csv_reads_back(photo_face):
    """The per-frame CSV (live page, video page, batch) holds what the table holds: frame and
    track id exactly, the rest to the 6 significant digits it is written with."""
    _, face = photo_face
    rows = table.stack(table.frame_rows(7, 0.28, [face]))
    header, back = read_csv(table.csv_text(rows))
    assert header == list(table.COLUMNS)
    assert back[:, [table.COL["frame"], table.COL["track_id"]]].tolist() == [[7, face.track_id]]
    assert np.allclose(back, rows, rtol=1e-5, atol=1e-4)


def test_video_writer_writes_h264_a_browser_plays_and_pads_odd_sizes(samples, tmp_path):
    import av

    from densehead.io.video import SMALL_H264_PRESET, VideoWriter, iter_frames

    frames = [f[:239, :319] for f in iter_frames(samples / "videos" / "orlando_bloom.avi")]
    # H.264 in yuv420p is what every browser plays
    for name, codec, pixels in (("o.mp4", "h264", "yuv420p"), ("o.avi", "mjpeg", "yuvj420p")):
        with VideoWriter(tmp_path / name, 25.0) as writer:
            for frame in frames:
                writer.write(frame)
        with av.open(str(tmp_path / name)) as c:   # PyAV 18.1.1 refuses a closed file's stream
            stream = c.streams.video[0]
            back = [f.to_ndarray(format="bgr24") for f in c.decode(stream)]
            written = (stream.codec_context.name, stream.codec_context.pix_fmt,
                       float(stream.average_rate))
        assert written == (codec, pixels, 25.0)
        assert len(back) == len(frames) == 139
        assert back[0].shape == (240, 320, 3)
        # lossy coding at CRF 23 and JPEG's default quality: a few grey levels per pixel (median
        # frame 3.2 and 5.5 here); the bound leaves room for an x264 that decides a little
        # differently with another CPU's thread count
        errors = [np.abs(b[:239, :319].astype(int) - f).mean() for b, f in zip(back, frames)]
        assert np.median(errors) < 8, (name, np.median(errors))
        # the padding row and column are black, but for the colour 4:2:0 shares with their
        # neighbours (a mean of 3-13 here, where a copied edge would average 44-66)
        assert max(max(b[239].mean(), b[:, 319].mean()) for b in back) < 20, name
    # the preset for videos kept in memory (the video page) makes a much smaller file
    with VideoWriter(tmp_path / "small.mp4", 25.0, SMALL_H264_PRESET) as writer:
        for frame in frames:
            writer.write(frame)
    small, default = ((tmp_path / n).stat().st_size for n in ("small.mp4", "o.mp4"))
    assert small < 0.75 * default, (small, default)   # 0.52 here
    # a frame after the end is refused: it would have started the finished video again
    with pytest.raises(VideoError, match="small.mp4 is finished"):
        writer.write(frames[0])
    assert (tmp_path / "small.mp4").stat().st_size == small


def test_a_video_that_cannot_be_written_says_so_at_its_first_frame(samples, tmp_path):
    from densehead.io.video import VideoWriter, iter_frames

    frame = next(iter_frames(samples / "videos" / "orlando_bloom.avi"))
    writer = VideoWriter(tmp_path / "missing" / "o.mp4", 25.0)
    with pytest.raises(VideoError, match="cannot write video .*o.mp4"):
        writer.write(frame)
    writer.close()
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_video_whose_disk_fills_up_says_so_and_leaves_no_broken_file(samples, tmp_path):
    from densehead.io.video import VideoWriter, iter_frames

    frames = list(iter_frames(samples / "videos" / "orlando_bloom.avi"))
    out = tmp_path / "o.mp4"
    writer = VideoWriter(out, 25.0)
    # the file it writes before renaming: every write to it fails with "No space left on device"
    writer.partial.symlink_to("/dev/full")
    with pytest.raises(VideoError, match="No space left"):
        with writer:
            for frame in frames:
                writer.write(frame)
    assert not writer.partial.is_symlink() and not out.exists()


def test_an_interrupted_video_leaves_the_earlier_file_whole(samples, tmp_path):
    """Ctrl-C (or any error of the caller's) while a video is written: the file of that name
    from an earlier run is still there as it was, and nothing half-written is left beside it."""
    from densehead.io.video import VideoWriter, iter_frames

    frames = list(iter_frames(samples / "videos" / "orlando_bloom.avi"))
    out = tmp_path / "o.mp4"
    with VideoWriter(out, 25.0) as writer:
        for frame in frames:
            writer.write(frame)
    earlier = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 25.0) as writer:
            for i, frame in enumerate(frames):
                if i == 40:
                    raise KeyboardInterrupt
                writer.write(frame[:, ::-1])
                assert out.read_bytes() == earlier   # the old file stays whole while writing
    assert out.read_bytes() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]

