"""The pipeline on real photos: faces found, landmarks on them, accuracy of the compiled network
on the AFLW2000-3D samples, dense/sparse agreement, depth direction, bad input."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from helpers import aflw_items, image_path

from densehead import Pipeline
from densehead.core.errors import ImageError
from densehead.io.image import read_image
from densehead.tools.metrics import nme


def test_photo_faces_have_landmarks_inside_their_box(pipe, samples):
    for name, expected in [("emma.jpg", 3), ("JianzhuGuo.jpg", 1), ("trump_hillary.jpg", 2)]:
        frame = read_image(samples / "photos" / name)
        faces = pipe(frame).faces
        assert len(faces) == expected, name
        for face in faces:
            x1, y1, x2, y2 = face.box
            w, h = x2 - x1, y2 - y1
            inside = ((face.landmarks[:, 0] > x1 - 0.2 * w) & (face.landmarks[:, 0] < x2 + 0.2 * w)
                      & (face.landmarks[:, 1] > y1 - 0.2 * h) & (face.landmarks[:, 1] < y2 + 0.3 * h))
            assert inside.all(), f"{name}: landmarks off the detected face"
            assert face.params.shape == (62,) and face.shape_coeffs.shape == (40,)
            assert face.expression_coeffs.shape == (10,) and face.landmarks.shape == (68, 3)


def test_reference_crops_reproduce_upstream_accuracy(pipe):
    """Fed the 3DDFA crops, the compiled mb05 must match the upstream PyTorch figure (3.56 %
    mean NME on these 61 images) within rounding."""
    errors = []
    for item in aflw_items():
        frame = read_image(image_path(item))
        face = pipe(frame, rois=np.array([item["roi_box_3ddfa"]])).faces[0]
        gt = np.array(item["landmarks68"]) - 1.0  # MATLAB 1-based -> 0-based pixels
        errors.append(nme(face.landmarks, gt))
    assert 3.3 < 100 * np.mean(errors) < 3.8, f"mean NME {100 * np.mean(errors):.2f}%"


def test_detector_path_finds_and_aligns_frontal_faces(pipe):
    errors = []
    for item in aflw_items():
        if item["yaw_bin_3ddfa"] != "0-30":
            continue
        faces = pipe(read_image(image_path(item))).faces
        assert faces, f"no face in {item['image']}"
        gt = np.array(item["landmarks68"]) - 1.0
        errors.append(min(nme(f.landmarks, gt) for f in faces))
    assert np.median(errors) < 0.05, f"median NME {100 * np.median(errors):.2f}%"


def test_dense_agrees_with_sparse_and_depth_points_to_camera(pipe, samples):
    frame = read_image(samples / "photos" / "JianzhuGuo.jpg")
    face = pipe(frame, dense=True).faces[0]
    assert face.vertices is not None and face.vertices.shape == (38365, 3)
    keypoints = pipe.face_model.keypoint_vertex_indices
    assert np.abs(face.vertices[keypoints] - face.landmarks).max() < 0.5
    # depth grows towards the camera: the nose tip is nearer than the jaw ends
    assert face.landmarks[30, 2] > face.landmarks[[0, 16], 2].max()
    # dense vertices stay on the head: near the crop the network saw (the whole head, with
    # forehead and ears, may stand a little outside a tight refined crop)
    x1, y1, x2, y2 = face.roi
    m = 0.15 * (x2 - x1)
    assert (face.vertices[:, 0] > x1 - m).all() and (face.vertices[:, 0] < x2 + m).all()
    assert (face.vertices[:, 1] > y1 - m).all() and (face.vertices[:, 1] < y2 + m).all()


def test_given_boxes_skip_detection(pipe, samples):
    frame = read_image(samples / "photos" / "emma.jpg")
    detected = pipe(frame).faces[0]
    again = pipe(frame, boxes=detected.box[None])
    assert again.times.detect == 0.0 and len(again.faces) == 1
    assert np.abs(again.faces[0].landmarks - detected.landmarks).max() < 1e-3
    assert again.times.inference > 0


def test_grayscale_and_bgra_frames_work(pipe, samples):
    frame = read_image(samples / "photos" / "JianzhuGuo.jpg")
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    assert len(pipe(gray).faces) == 1 and len(pipe(bgra).faces) == 1


def test_no_face_and_tiny_frames_give_empty_results(pipe):
    assert pipe(np.full((480, 640, 3), 127, np.uint8)).faces == []
    assert pipe(np.zeros((4, 4, 3), np.uint8)).faces == []


def test_bad_frames_give_clear_errors(pipe, tmp_path):
    with pytest.raises(ImageError, match="empty"):
        pipe(np.zeros((0, 10, 3), np.uint8))
    # a flattened picture is not an empty one
    with pytest.raises(ImageError, match=r"HxW, HxWx3 or HxWx4 pixels, got shape \(300,\)"):
        pipe(np.zeros(300, np.uint8))
    with pytest.raises(ImageError, match=r"uint16: convert it first"):
        pipe(np.zeros((40, 40, 3), np.uint16))
    with pytest.raises(ImageError, match="too large"):
        pipe(np.zeros((9000, 9000, 3), np.uint8))
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        read_image(text)


def test_face_cut_by_the_border_still_aligns(pipe, samples):
    frame = read_image(samples / "photos" / "JianzhuGuo.jpg")
    full = pipe(frame).faces[0]
    x_mid = int((full.box[0] + full.box[2]) / 2)
    cut = np.ascontiguousarray(frame[:, x_mid - int(0.15 * (full.box[2] - full.box[0])):])
    faces = pipe(cut).faces
    assert len(faces) == 1, "the face cut by the border was not found"
    landmarks = faces[0].landmarks[:, :2] + [x_mid - int(0.15 * (full.box[2] - full.box[0])), 0]
    # the landmarks still in the picture sit where the whole photo put them
    visible = full.landmarks[:, 0] > x_mid
    size = np.sqrt(np.prod(full.box[2:] - full.box[:2]))
    assert np.abs(landmarks[visible] - full.landmarks[visible, :2]).mean() < 0.08 * size


def test_boxes_from_a_caller_must_be_finite_and_not_empty(pipe, samples):
    frame = read_image(samples / "photos" / "JianzhuGuo.jpg")
    for bad in ([[np.nan, 10, 100, 120]], [[50, 50, 40, 120]], [[0, 0, np.inf, 10]]):
        with pytest.raises(ValueError, match="boxes"):
            pipe(frame, boxes=np.array(bad, dtype=float))
    with pytest.raises(ValueError, match="rois"):
        pipe(frame, rois=np.array([[np.nan] * 4]))
    for bad in ([10, 20, 30], "abc"):
        with pytest.raises(ValueError, match=r"boxes must be rows of four numbers"):
            pipe(frame, boxes=bad)
    # a score per box: one missing would silently drop its face
    for scores in ([0.9], [0.9, 0.8, 0.7]):
        with pytest.raises(ValueError, match="one number per box"):
            pipe(frame, boxes=[[100, 150, 300, 400], [0, 0, 50, 50]], scores=scores)
    height, width = frame.shape[:2]
    with pytest.raises(ValueError, match=f"outside the {width}x{height} frame"):
        pipe(frame, boxes=[[width + 10, 10, width + 110, 110]])
    # a box the border cuts is a face the border cuts: still fitted
    assert len(pipe(frame, boxes=[[-20, 100, 200, 330]]).faces) == 1


def test_options_are_checked_and_views_share_the_models(pipe):
    from densehead import OptionsError, PipelineOptions

    for bad in ({"max_faces": -1}, {"max_faces": 0}, {"score_threshold": float("nan")},
                {"score_threshold": 1.5}, {"num_threads": 0}, {"regressor": "mb9"}):
        with pytest.raises(OptionsError):
            PipelineOptions(**bad)
    from densehead import TrackerOptions
    for bad in ({"beta": -1.0}, {"min_cutoff": 0.0}, {"redetect_every": 0}, {"match_iou": 2.0}):
        with pytest.raises(OptionsError):
            TrackerOptions(**bad)
    strict = pipe.with_options(score_threshold=0.95, max_faces=1)
    assert strict.loaded is pipe.loaded and strict.options.max_faces == 1
    assert pipe.options.max_faces == PipelineOptions().max_faces  # the original is unchanged
    with pytest.raises(ValueError, match="loaded for"):
        pipe.with_options(num_threads=1)
    with pytest.raises(TypeError, match="Pipeline\\(max_faces=2\\)"):
        Pipeline({"max_faces": 2})


def test_a_pipeline_pickles_as_its_options_and_fits_the_same(pipe, samples):
    """What multiprocessing and joblib do with a pipeline handed to their workers."""
    frame = read_image(samples / "photos" / "JianzhuGuo.jpg")
    copy = pickle.loads(pickle.dumps(pipe.with_options(max_faces=1)))
    assert copy.options == pipe.options.replace(max_faces=1)
    # the same models on the same CPU: the same numbers
    assert np.array_equal(copy(frame).faces[0].landmarks, pipe(frame).faces[0].landmarks)


def test_max_faces_keeps_the_best_faces(pipe, samples):
    frame = read_image(samples / "photos" / "emma.jpg")
    every = pipe(frame).faces
    assert len(every) == 3
    one = pipe.with_options(max_faces=1)(frame).faces
    assert len(one) == 1 and one[0].score == max(f.score for f in every)


def test_faces_compare_by_identity(pipe, samples):
    """Faces hold numpy arrays: field-wise == would raise; lists of faces must still work."""
    faces = pipe(read_image(samples / "photos" / "trump_hillary.jpg")).faces
    assert faces.index(faces[1]) == 1 and faces[0] in faces
    assert faces[0] != faces[1] and not (faces[0] == faces[1])
