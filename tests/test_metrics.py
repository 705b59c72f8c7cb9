"""The metrics on hand-made cases whose answers are known without running any model."""
from __future__ import annotations

import numpy as np
import pytest

from densehead.tools import metrics as M


def _square_face(side: float = 100.0) -> np.ndarray:
    """68 points spread over a side x side box (its sqrt(w*h) is exactly `side`)."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, side, size=(68, 2))
    pts[0], pts[1] = (0, 0), (side, side)
    return pts + 50


def test_identical_landmarks_score_zero() -> None:
    gt = _square_face()
    assert M.nme(gt, gt) == 0.0


def test_known_shift_gives_known_nme() -> None:
    gt = _square_face(200.0)
    assert M.nme_norm(gt) == pytest.approx(200.0)
    # every point moved by (3, 4): distance 5 each, normalised by 200 -> 2.5 %
    assert M.nme(gt + [3.0, 4.0], gt) == pytest.approx(0.025)
    assert M.nme(gt + [3.0, 4.0], gt, norm=50.0) == pytest.approx(0.1)


def test_nme_norm_uses_rectangular_box() -> None:
    pts = np.array([[0.0, 0.0], [40.0, 90.0]] + [[10.0, 10.0]] * 66)
    assert M.nme_norm(pts) == pytest.approx(60.0)   # sqrt(40 * 90)


def test_nme_ignores_depth_column() -> None:
    gt = _square_face()
    pred = np.column_stack([gt, np.full(68, 1e3)])
    assert M.nme(pred, gt) == 0.0


def test_yaw_bins_follow_3ddfa_edges() -> None:
    assert [M.yaw_bin(v) for v in (0, -30, 30.01, 60, -60.5, 95)] == [
        "0-30", "0-30", "30-60", "30-60", "60-90", "60-90"]


def test_summary_balanced_is_unweighted_bin_mean() -> None:
    s = M.summarize_nme([0.01, 0.03, 0.04, 0.06], ["0-30", "0-30", "30-60", "60-90"])
    assert s.per_bin == pytest.approx({"0-30": 2.0, "30-60": 4.0, "60-90": 6.0})
    assert s.balanced == pytest.approx(4.0)
    assert s.mean == pytest.approx(3.5)
    assert s.counts == {"0-30": 2, "30-60": 1, "60-90": 1}


def test_rotation_matches_dataset_matrices() -> None:
    # R = Rx(pitch) Ry(yaw) Rz(roll) with the dataset's (transposed-looking) elementary matrices
    a = np.radians(20.0)
    c, s = np.cos(a), np.sin(a)
    np.testing.assert_allclose(M.rotation_from_euler(20, 0, 0), [[c, 0, -s], [0, 1, 0], [s, 0, c]], atol=1e-12)
    np.testing.assert_allclose(M.rotation_from_euler(0, 20, 0), [[1, 0, 0], [0, c, s], [0, -s, c]], atol=1e-12)
    np.testing.assert_allclose(M.rotation_from_euler(0, 0, 20), [[c, s, 0], [-s, c, 0], [0, 0, 1]], atol=1e-12)


@pytest.mark.parametrize("ypr", [(10, -20, 5), (-75, 30, -40), (0, 0, 0), (89, 1, -1)])
def test_euler_round_trip(ypr: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(M.euler_from_rotation(M.rotation_from_euler(*ypr)), ypr, atol=1e-6)


def test_known_rotation_gives_known_angle_errors() -> None:
    gt = (30.0, -10.0, 5.0)
    pred = (33.0, -10.0, 5.0)           # 3 degrees more yaw, nothing else
    s = M.summarize_pose(np.array([pred]), np.array([gt]),
                         np.array([M.geodesic_deg(M.rotation_from_euler(*pred), M.rotation_from_euler(*gt))]))
    assert (s.yaw, s.pitch, s.roll) == pytest.approx((3.0, 0.0, 0.0))
    assert s.mean == pytest.approx(1.0)
    # yaw is applied after pitch in R = Rx Ry Rz, but a pure yaw change is still a 3 degree rotation
    assert s.geodesic == pytest.approx(3.0, abs=1e-6)


def test_geodesic_of_known_rotation_about_z() -> None:
    r = M.rotation_from_euler(0, 0, 0)
    assert M.geodesic_deg(r, r) == pytest.approx(0.0, abs=1e-6)
    assert M.geodesic_deg(r, M.rotation_from_euler(0, 0, 25)) == pytest.approx(25.0)


def test_angle_errors_wrap_around() -> None:
    assert M.angle_diff(179.0, -179.0) == pytest.approx(2.0)
    s = M.summarize_pose(np.array([[0, 0, 179.0]]), np.array([[0, 0, -179.0]]), np.array([2.0]))
    assert s.roll == pytest.approx(2.0)


def test_pose_range_filter() -> None:
    assert M.pose_in_range(98, -99, 0)
    assert not M.pose_in_range(-104, 10, 10)


def test_iou() -> None:
    from densehead.core.boxes import iou

    assert iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == pytest.approx(1.0)
    assert iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(1 / 3)
    assert iou(np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])) == 0.0


# ---------------------------------------------------------------- stability

def _track(frames: int, motion: np.ndarray | None = None) -> np.ndarray:
    base = _square_face(100.0)
    pts = np.repeat(base[None], frames, axis=0)
    if motion is not None:
        pts = pts + motion[:, None, :]
    return pts


def test_still_track_has_no_jitter() -> None:
    s = M.stability(_track(10), np.full(10, 100.0))
    assert s.displacement == 0.0 and s.accel_var == 0.0
    assert s.frames == 10 and s.segments == 1


def test_constant_velocity_moves_but_does_not_accelerate() -> None:
    motion = np.column_stack([np.arange(20) * 2.0, np.zeros(20)])   # 2 px per frame on a 100 px face
    s = M.stability(_track(20, motion), np.full(20, 100.0))
    assert s.displacement == pytest.approx(2.0)                       # percent of face size
    assert s.accel_var == pytest.approx(0.0, abs=1e-12)


def test_alternating_jitter_has_known_acceleration_variance() -> None:
    # x alternates +1, -1 px: displacement 2 px, second difference +-4 px on x and 0 on y
    x = np.where(np.arange(30) % 2 == 0, 1.0, -1.0)
    s = M.stability(_track(30, np.column_stack([x, np.zeros(30)])), np.full(30, 100.0))
    assert s.displacement == pytest.approx(2.0)
    # values +-4 % (x) and 0 (y), equally many: variance = 16 / 2 = 8 %^2
    assert s.accel_var == pytest.approx(8.0)


def test_still_track_far_from_origin_ignores_size_noise() -> None:
    # a face that does not move but whose size estimate wobbles has no jitter
    pts = _track(12) + 1000.0
    sizes = 100.0 + np.where(np.arange(12) % 2 == 0, 3.0, -3.0)
    s = M.stability(pts, sizes)
    assert s.displacement == 0.0 and s.accel_var == 0.0


def test_missing_frames_split_the_track() -> None:
    motion = np.zeros((10, 2))
    motion[5:] = 50.0                 # a jump while the face is lost must not count
    present = np.ones(10, bool)
    present[4:6] = False
    s = M.stability(_track(10, motion), np.full(10, 100.0), present)
    assert s.displacement == 0.0 and s.segments == 2 and s.frames == 8


def test_lag_of_a_delayed_copy() -> None:
    t = np.arange(80, dtype=float)
    raw = np.column_stack([np.sin(t / 6.0), np.cos(t / 9.0)])
    delayed = np.vstack([raw[:2], raw[:-2]])     # exactly two frames late
    assert M.lag_frames(raw, delayed) == pytest.approx(2.0, abs=0.051)
    assert M.lag_frames(raw, raw) == pytest.approx(0.0, abs=1e-9)
