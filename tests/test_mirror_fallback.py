"""The mirror fallback (mirrored frame, confirmed by the landmark fit) on real images:
profile faces RFB-320 misses are found with their landmarks on the face, face-free pictures
still give no face, and the fit check is what turns away the mirrored pass's background boxes.
Then the rotated fallback (the frame turned by 90 degrees each way): the AFLW2000 samples turned
on their side are found, fitted and put back on the frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import (
    aflw_items,
    image_path,
    turned_aflw,
    turned_distance,
    two_people_lying,
)

from densehead.core.boxes import iou, landmark_box
from densehead.engine.mirror_fallback import (
    MAX_MIRROR_DISAGREEMENT,
    fit_both_ways,
)
from densehead.engine.tracking import FaceTracker
from densehead.engine.turns import turn_frame
from densehead.io.image import read_image
from densehead.tools.metrics import nme

# The three AFLW2000-3D samples the detector alone misses: faces turned 72-105 deg.
MISSED = ("image00158", "image01530", "image03968")


def aflw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The image and its 0-based ground-truth landmarks."""
    item = next(i for i in aflw_items() if name in i["image"])
    return read_image(image_path(item)), np.array(item["landmarks68"]) - 1.0


def counting(detector, calls: list[tuple[int, ...]]):
    """`detector` that also appends the shape of every image it is run on to `calls`."""

    class Counting:
        def __getattr__(self, name):
            return getattr(detector, name)

        def __call__(self, image):
            calls.append(image.shape)
            return detector(image)

    return Counting()


@pytest.mark.parametrize("name", MISSED)
def test_profile_face_the_detector_misses_is_found_on_the_face(pipe, name):
    frame, gt = aflw(name)
    assert len(pipe.detector(frame).boxes) == 0, "the detector alone finds it now: pick another"
    faces = pipe(frame).faces
    assert len(faces) == 1
    face = faces[0]
    assert iou(landmark_box(face.landmarks), landmark_box(gt)) > 0.6
    # on ground-truth crops the network scores 3.8-6.7 % on these three
    assert nme(face.landmarks, gt) < 0.08, f"NME {100 * nme(face.landmarks, gt):.1f} %"
    assert abs(face.yaw) > 60, "a profile face, so the fit must say it is turned"


def test_tracker_picks_up_a_profile_face(pipe):
    frame, gt = aflw("image00158")
    tracker = FaceTracker(pipe, redetect_every=10)
    for _ in range(3):
        faces = tracker(frame).faces
        assert len(faces) == 1
        assert iou(landmark_box(faces[0].landmarks), landmark_box(gt)) > 0.6


def face_free_pictures(samples) -> dict[str, np.ndarray]:
    """Real pictures without a face: regions of the sample photos, plus blank and noise."""
    trump = read_image(samples / "photos" / "trump_hillary.jpg")
    emma = read_image(samples / "photos" / "emma.jpg")
    guo = read_image(samples / "photos" / "JianzhuGuo.jpg")
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return {
        "trump_hillary suits and microphones": trump[420:],
        "trump_hillary text backdrop": trump[:, 1290:],
        "emma backs and dresses": emma[1000:],
        "JianzhuGuo gown": guo[380:],
        "blank": np.full((480, 640, 3), 128, np.uint8),
        "noise": noise,
        "smooth noise": cv2.GaussianBlur(noise, (0, 0), 4),
    }


@pytest.mark.parametrize("turns", [0, 1, -1])
def test_face_free_pictures_give_no_face(pipe, samples, turns):
    """With both fallbacks on (the default), also on the pictures turned on their side."""
    assert pipe.options.mirror_fallback and pipe.options.rotated_fallback
    found = {name: len(pipe(np.ascontiguousarray(np.rot90(img, turns))).faces)
             for name, img in face_free_pictures(samples).items()}
    assert not any(found.values()), found


def flowers() -> np.ndarray:
    """The left strip of AFLW image02075: flowers and leaves beside the face, no face."""
    frame, _ = aflw("image02075")
    return np.ascontiguousarray(frame[:, :150])


def test_fit_check_turns_away_what_the_mirrored_frame_calls_a_face(pipe):
    strip = flowers()
    assert len(pipe.detector(strip).boxes) == 0
    boxes, scores = pipe.detector(np.ascontiguousarray(strip[:, ::-1]))
    assert len(boxes) == 1 and scores[0] >= pipe.detector.score_threshold  # a flower
    assert pipe(strip).faces == []


def test_fit_and_mirrored_fit_agree_on_faces_not_on_background(pipe, samples):
    faces = []
    for name in ("JianzhuGuo.jpg", "trump_hillary.jpg"):
        frame = read_image(samples / "photos" / name)
        faces += [fit_both_ways(pipe, frame, box).disagreement
                  for box in pipe.detector(frame).boxes]
    strip = flowers()
    box = pipe.detector(np.ascontiguousarray(strip[:, ::-1])).boxes[0]
    box[[0, 2]] = strip.shape[1] - box[[2, 0]]
    background = fit_both_ways(pipe, strip, box).disagreement
    assert len(faces) == 3 and max(faces) < MAX_MIRROR_DISAGREEMENT / 2, faces
    assert background > 2 * MAX_MIRROR_DISAGREEMENT, background


def test_mirror_fallback_can_be_switched_off(pipe):
    frame, _ = aflw(MISSED[0])
    # (the turned frame shows this profile face too, so that second look is off as well)
    assert pipe.with_options(mirror_fallback=False, rotated_fallback=False)(frame).faces == []


# --- the rotated fallback ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, -1], ids=["anticlockwise", "clockwise"])
def test_faces_lying_sideways_are_found_on_the_face(pipe, k):
    """Turned a quarter, 15 of the 61 samples give no face upright nor mirrored; the rotated
    pass finds 14 of them here (margin: 10), each with its landmarks on the face (NME under 8 %,
    as the mirror fallback's profile faces) and the quarter turn in its roll."""
    upright_only = pipe.with_options(rotated_fallback=False)
    rescued, wrong = 0, []
    for name, frame, gt, pose in turned_aflw(k):
        if upright_only(frame).faces:
            continue
        faces = pipe(frame).faces
        if not faces:
            continue
        rescued += 1
        face = faces[0]
        expected_roll = pose["roll"] - 90 * k   # anticlockwise turns the face anticlockwise
        roll_error = (face.roll - expected_roll + 180) % 360 - 180
        if nme(face.landmarks, gt) > 0.08 or (abs(pose["yaw"]) < 30 and abs(roll_error) > 30):
            wrong.append((name, round(100 * nme(face.landmarks, gt), 1), round(roll_error)))
    assert rescued >= 10, rescued
    assert not wrong, wrong


@pytest.mark.parametrize("k", [1, -1], ids=["anticlockwise", "clockwise"])
def test_faces_the_detector_finds_lying_sideways_are_fitted_where_they_stand_upright(pipe, k):
    """Turned a quarter, 45-48 of the 61 samples are still found by the detector alone. Fitted
    as they lie, by a network trained on upright faces, their median NME was 5.2-6.2 %; fitted
    again in the turn that stands them upright (their tilt past 55 degrees) it is 3.0 % here, as
    for the same faces upright (2.9-3.0 %). The bound, 4 %, lies between with a margin of
    about 1 % either way, far more than NME moves between CPUs (hundredths)."""
    upright_only = pipe.with_options(rotated_fallback=False)
    errors = [100 * nme(pipe(frame).faces[0].landmarks, gt)
              for _, frame, gt, _ in turned_aflw(k) if upright_only(frame).faces]
    assert len(errors) >= 40, len(errors)
    assert np.median(errors) < 4.0, sorted(np.round(errors, 1))


@pytest.mark.parametrize("k", [1, -1], ids=["anticlockwise", "clockwise"])
@pytest.mark.parametrize("name", ["trump_hillary.jpg", "emma.jpg", "JianzhuGuo.jpg"])
def test_a_photo_taken_sideways_gives_every_face_the_upright_photo_gives(pipe, samples, name, k):
    """The sample photos turned a quarter give all their faces (before: none, or only the one
    the mirrored pass confirmed lying down, fitted as it lay), each within a hundredth of its
    size of the upright photo's face, put back on it (0.003-0.008 here; what is left comes from
    the detector's box in the turned picture, which the refine pass mostly absorbs)."""
    photo = read_image(samples / "photos" / name)
    upright = pipe(photo).faces
    turned = pipe(turn_frame(photo, k)).faces
    assert len(turned) == len(upright) >= 1
    for face in upright:
        assert turned_distance(face, turned, k, photo.shape) < 0.02


def test_the_faces_beside_one_found_lying_sideways_are_found_too(pipe):
    """Two people side by side, the picture taken sideways: the detector finds one of them as
    they lie and not the other, which the fallbacks then never looked for (5 of these 10 pairs
    lost a face). The frame turned the way the first lies is looked at too: every face of the
    upright picture is found, within a few hundredths of its size of the upright fit (at most
    0.012 here; 0.05 allows for the turned picture's other detector box)."""
    for picture in two_people_lying(pipe):
        upright = pipe(picture).faces
        turned = pipe(turn_frame(picture, 1)).faces
        assert len(upright) == 2 and len(turned) == 2
        for face in upright:
            assert turned_distance(face, turned, 1, picture.shape) < 0.05


def test_a_profile_looking_down_is_not_taken_for_a_face_lying_sideways(pipe):
    """Upright, no sample is fitted again: the turn follows the face's tilt in the picture (at
    most 44 degrees on these), not its roll angle, which reaches 70-100 degrees on three
    profiles seen from below or above and would have made their fits worse."""
    upright_only = pipe.with_options(rotated_fallback=False)
    for item in aflw_items():
        image = read_image(image_path(item))
        ours, theirs = pipe(image).faces, upright_only(image).faces
        if ours and theirs:   # (the three profiles the detector misses are found only by ours)
            np.testing.assert_array_equal(ours[0].landmarks, theirs[0].landmarks,
                                          err_msg=item["image"])


def test_the_rotated_fallback_can_be_switched_off_and_costs_nothing_when_faces_are_found(pipe):
    upright_only = pipe.with_options(rotated_fallback=False)
    frame = next(t[1] for t in turned_aflw(1) if not upright_only(t[1]).faces)
    assert len(pipe(frame).faces) == 1
    # an upright face: the detector runs once, no second look of either kind
    calls: list[tuple[int, ...]] = []
    upright = read_image(image_path(next(i for i in aflw_items() if "image00002" in i["image"])))
    view = pipe.with_options()
    view.detector = counting(pipe.detector, calls)
    assert len(view(upright).faces) == 1 and len(calls) == 1


def test_a_stream_with_nobody_in_view_looks_harder_only_every_redetect_every_frames(pipe, samples):
    """With nobody in view the tracker detects on every frame; the mirrored and turned looks
    (three more detector runs on a frame without a face) come every `redetect_every` frames, so
    an empty scene costs about one detection a frame; a face lying down that walks in is still
    found within `redetect_every` frames."""
    upright_only = pipe.with_options(rotated_fallback=False)
    sideways = next(t[1] for t in turned_aflw(1) if not upright_only(t[1]).faces)
    empty = np.zeros_like(sideways)
    calls: list[tuple[int, ...]] = []
    view = pipe.with_options()
    view.detector = counting(pipe.detector, calls)
    tracker = FaceTracker(view, redetect_every=5)
    per_frame = []
    for _ in range(10):
        before = len(calls)
        assert tracker(empty).faces == []
        per_frame.append(len(calls) - before)
    assert per_frame == [4, 1, 1, 1, 1] * 2   # upright + mirrored + turned both ways, then upright
    found_after = next(i for i in range(1, 6) if tracker(sideways).faces)
    assert found_after <= 5
    ids = {face.track_id for _ in range(12) for face in tracker(sideways).faces}
    assert len(ids) == 1, "the face lying down keeps its id through the scheduled detections"
