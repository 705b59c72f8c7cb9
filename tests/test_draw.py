"""Overlays drawn on real faces land on the faces."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import shared_pipeline

from densehead.io.image import read_image
from densehead.render import draw


@pytest.fixture(scope="module")
def scene(samples):
    pipe = shared_pipeline()
    frame = read_image(samples / "photos" / "trump_hillary.jpg")
    return pipe, frame, pipe(frame, dense=True).faces


@pytest.mark.parametrize("mode", ["sparse", "dense", "pose"])
def test_overlay_changes_pixels_on_the_faces_only(scene, mode, output_dir):
    import cv2

    pipe, frame, faces = scene
    before = frame.copy()
    out = draw.overlay(frame, faces, mode, pipe.face_model)
    assert (frame == before).all(), "overlay drew on the caller's frame"
    cv2.imwrite(str(output_dir / f"draw_{mode}.jpg"), out)
    changed = np.abs(out.astype(int) - frame.astype(int)).sum(axis=2) > 0
    near = np.zeros_like(changed)
    for face in faces:
        x1, y1, x2, y2 = face.roi.astype(int)
        pad = int(0.5 * (x2 - x1))  # the pose cube and its text stand out of the crop a little
        near[max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad] = True
        fx1, fy1, fx2, fy2 = face.box.astype(int)
        assert changed[fy1:fy2, fx1:fx2].any(), f"{mode}: nothing drawn on a face"
    assert not changed[~near].any(), f"{mode}: drawing far from every face"


def test_the_rendered_modes_need_vertices_and_the_points_do_not(scene):
    pipe, frame, faces = scene
    sparse_faces = pipe(frame).faces
    for mode in draw.RENDERED:
        assert draw.needs_dense(mode)
        with pytest.raises(ValueError, match="dense=True"):
            draw.overlay(frame, sparse_faces, mode, pipe.face_model)
    # the points drawn from the parameters alone are the points of the whole mesh, within
    # float32 rounding (the projection's vector loop and its tail round apart: up to 5e-4 px
    # measured on the sample photos, turned a quarter too)
    assert not draw.needs_dense("dense")
    assert len(sparse_faces) == len(faces) and all(f.vertices is None for f in sparse_faces)
    for alone, whole in zip(sparse_faces, faces):
        np.testing.assert_allclose(draw.dense_points(alone, pipe.face_model),
                                   whole.vertices[::draw.DENSE_STEP], rtol=0, atol=1e-3)
    assert (draw.overlay(frame, sparse_faces, "dense", pipe.face_model) != frame).any()
    with pytest.raises(ValueError, match="unknown mode"):
        draw.overlay(frame, sparse_faces, "cartoon", pipe.face_model)


@pytest.mark.parametrize("mode", ["sparse", "pose"])
def test_in_place_draws_the_same_picture_on_the_frame_itself(scene, mode):
    pipe, frame, faces = scene
    copied = draw.overlay(frame, faces, mode, pipe.face_model)
    mine = frame.copy()
    out = draw.overlay(mine, faces, mode, pipe.face_model, in_place=True)
    assert out is mine, "in_place returned a new picture: the live page pays for a copy"
    assert (out == copied).all(), "in_place drew something else than the copying overlay"
    assert (out != frame).any()


@pytest.mark.parametrize("mode", ["sparse", "mesh"])
def test_overlay_takes_the_frames_the_pipeline_takes(scene, mode):
    """Grayscale and BGRA frames are drawn on as BGR, as the pipeline reads them; float pixels
    (a 0..1 image) are refused, not drawn on in 0..255 colours."""
    import cv2

    from densehead.core.errors import ImageError

    pipe, frame, faces = scene
    model = pipe.face_model
    colour = draw.overlay(frame, faces, mode, model)
    for other in (cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)):
        drawn = draw.overlay(other, faces, mode, model)
        assert drawn.shape == frame.shape and drawn.dtype == np.uint8
        changed = np.any(drawn != cv2.cvtColor(other, cv2.COLOR_GRAY2BGR) if other.ndim == 2
                         else drawn != other[:, :, :3], axis=2)
        assert changed.sum() > 0.5 * np.any(colour != frame, axis=2).sum()
    with pytest.raises(ImageError, match="uint8"):
        draw.overlay(frame.astype(np.float32) / 255, faces, mode, model)
