"""The evaluation harness: dataset loading, scoring, reports, and the command on the 61 samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densehead import Face
from densehead.cli import main as cli_main
from densehead.core.boxes import landmark_box
from densehead.tools import datasets as D
from densehead.tools import evaluate as E
from densehead.tools import metrics as M


@pytest.fixture(scope="module")
def aflw(samples: Path) -> Path:
    return samples / "aflw2000"


def test_mat_and_manifest_agree(aflw: Path) -> None:
    mats = D.load_dataset(aflw, "mat")
    manifest = D.load_dataset(aflw / "ground_truth.json")
    assert len(mats) == len(manifest) == 61
    by_name = {s.name: s for s in manifest}
    for s in mats:
        m = by_name[s.name]
        assert s.image == m.image
        np.testing.assert_allclose(s.landmarks, m.landmarks, atol=2e-3)
        assert (s.yaw, s.pitch, s.roll) == pytest.approx((m.yaw, m.pitch, m.roll), abs=2e-3)
        assert s.roi_3ddfa is None


def test_auto_merges_3ddfa_crops_and_bins(aflw: Path) -> None:
    data = D.load_dataset(aflw)
    assert all(s.roi_3ddfa is not None for s in data)
    bins = [s.bin for s in data]
    assert (bins.count("0-30"), bins.count("30-60"), bins.count("60-90")) == (37, 15, 9)
    assert sum(s.in_range for s in data) == 60
    gt = json.loads((aflw / "ground_truth.json").read_text())["images"]
    assert [e["yaw_bin_3ddfa"] for e in gt] == [s.bin for s in sorted(data, key=lambda s: s.image.name)]


def test_landmark_roi_rule_reproduces_3ddfa_crops(aflw: Path) -> None:
    # the benchmark's crops are this rule applied to the stored landmarks, rounded to pixels
    for s in D.load_dataset(aflw):
        np.testing.assert_allclose(E.roi_from_landmarks(s.landmarks), s.roi_3ddfa, atol=1.0)


def _perfect_face(s: D.Sample, shift: float = 0.0) -> Face:
    """A real Face record carrying the ground truth itself (optionally shifted in x)."""
    lm = np.column_stack([s.landmarks + [shift, 0.0], np.zeros(68)])
    return Face(box=landmark_box(lm), score=1.0, roi=E.roi_from_landmarks(lm), params=np.zeros(62),
                camera=np.zeros((3, 4)), rotation=s.rotation, translation=np.zeros(3), scale=1.0,
                yaw=s.yaw, pitch=s.pitch, roll=s.roll, landmarks=lm)


def test_ground_truth_scores_zero_and_a_shift_scores_its_size(aflw: Path) -> None:
    data = D.load_dataset(aflw)
    exact = E.summarize("x", [E.score_face(s, _perfect_face(s), s.landmarks, 1.0) for s in data])
    assert exact.nme.balanced == pytest.approx(0.0, abs=1e-12)
    assert exact.pose.mean == pytest.approx(0.0, abs=1e-9)
    assert exact.pose.geodesic == pytest.approx(0.0, abs=1e-3)
    assert exact.pose.count == 60 and exact.not_found == 0
    # a 2 px shift: NME of each image is 2 / its normaliser
    shifted = [E.score_face(s, _perfect_face(s, 2.0), s.landmarks, 1.0) for s in data]
    for s, r in zip(data, shifted):
        assert r.nme == pytest.approx(2.0 / M.nme_norm(s.landmarks))


def test_pick_face_matches_the_ground_truth(aflw: Path) -> None:
    s = D.load_dataset(aflw)[0]
    far = _perfect_face(s, 500.0)
    near = _perfect_face(s, 3.0)
    assert E._pick_face([far, near], s.landmarks) is near
    assert E._pick_face([far], s.landmarks) is None
    missing = E.score_face(s, None, s.landmarks, 1.0)
    rep = E.summarize("wild", [missing, E.score_face(s, near, s.landmarks, 1.0)])
    assert rep.not_found == 1 and rep.nme.counts[s.bin] == 1


def test_table_and_json(tmp_path: Path, aflw: Path) -> None:
    data = D.load_dataset(aflw)
    rep = E.summarize("gt-box", [E.score_face(s, _perfect_face(s, 1.0), s.landmarks, 2.0) for s in data])
    text = E.format_reports([rep])
    assert "gt-box" in text and "NME" in text
    out = E.reports_to_json([rep], {"regressor": "test"})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(out))          # NaN-free, JSON-ready
    back = json.loads(path.read_text())
    assert back["protocols"]["gt-box"]["images"] == 61
    assert len(back["protocols"]["gt-box"]["per_image"]) == 61


def test_command_on_aflw2000_reproduces_reference(tmp_path: Path, aflw: Path, assets_dir: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI run: all three protocols once over the 61 images. On the 3DDFA crops with the raw
    GT coordinates (as the upstream benchmark compares them) our TFLite compile of mb05 must
    give the upstream PyTorch figures: 4.13 % balanced NME, 3.91 degrees mean pose MAE."""
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(assets_dir))  # offline: never a download
    out = tmp_path / "eval.json"
    assert cli_main(["evaluate", str(aflw), "--json", str(out), "--no-refine", "--no-flip",
                     "--regressor", "mb05"]) == 0   # the float graph is what upstream ran
    printed = capsys.readouterr().out
    assert "3ddfa" in printed
    assert "regressor: mb05 (asked for by name)" in printed   # the figures depend on the graph
    res = json.loads(out.read_text())["protocols"]
    assert set(res) == {"3ddfa", "gt-box", "wild"}
    r = res["3ddfa"]
    assert r["nme"]["balanced"] == pytest.approx(4.13, abs=0.01)
    assert r["nme"]["mean"] == pytest.approx(3.56, abs=0.01)
    assert [r["nme"]["per_bin"][b] for b in M.YAW_BINS] == pytest.approx([2.84, 4.40, 5.15], abs=0.01)
    # the pose extraction of the reference is not published; ours lands within 0.02 degrees
    assert (r["pose"]["pitch"], r["pose"]["yaw"], r["pose"]["roll"]) == pytest.approx((5.54, 2.78, 3.42), abs=0.03)
    assert r["pose"]["count"] == 60 and r["not_found"] == 0
    for p in ("gt-box", "wild"):
        assert res[p]["nme"]["balanced"] < 4.5
    assert res["wild"]["not_found"] <= 3


def test_evaluate_video_command(tmp_path: Path, samples: Path, assets_dir: Path,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Smoothing on must jitter less than off, and trail the raw track by a bounded lag."""
    video = samples / "videos" / "orlando_bloom.avi"
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(assets_dir))
    out = tmp_path / "video.json"
    assert cli_main(["evaluate-video", str(video), "--max-frames", "60", "--json", str(out)]) == 0
    assert "smoothing lag" in capsys.readouterr().out
    rep = json.loads(out.read_text())[0]
    assert rep["frames"] == 60 and rep["raw"]["frames"] >= 55
    assert rep["smoothed"]["accel_var"] < rep["raw"]["accel_var"]
    assert 0.0 <= rep["lag_frames"] < 5.0
