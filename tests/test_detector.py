"""UltraFace detector on real photos and AFLW2000-3D ground truth."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehead.core.boxes import iou
from densehead.engine.detector import (
    FaceDetector,
    letterbox,
    normalise,
    ultraface_priors,
)
from densehead.weights.assets import ModelFileError
from densehead.weights.detector_graph import detector_tflite, detector_tflite_bytes
from densehead.weights.tflite_writer import STALE_DAYS


@pytest.fixture(scope="module")
def graph(assets_dir: Path, tmp_path_factory) -> Path:
    """The graph the pipeline runs: RFB-320 rewritten by densehead (uint8 BGR input)."""
    return detector_tflite(assets_dir / "RFB-320.tflite", tmp_path_factory.mktemp("compiled"))


@pytest.fixture(scope="module")
def det(graph: Path) -> FaceDetector:
    return FaceDetector(graph)


def photo(samples: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(samples / "photos" / name))
    assert img is not None, name
    return img


def test_priors_cover_every_head_cell() -> None:
    p = ultraface_priors()
    # 40x30x3 + 20x15x2 + 10x8x2 + 5x4x3
    assert p.shape == (4420, 4)
    assert p.min() >= 0 and p.max() <= 1


def test_letterbox_keeps_aspect_and_normalises() -> None:
    frame = np.zeros((100, 400, 3), np.uint8)
    frame[..., 0] = 255   # blue
    canvas, lb = letterbox(frame)
    assert canvas.shape == (1, 240, 320, 3) and canvas.dtype == np.uint8
    assert lb.dx == 0 and lb.dy == 80 and lb.sx == pytest.approx(0.8)
    assert canvas[0, 120, 160].tolist() == [255, 0, 0]   # BGR as it was: the graph takes BGR
    x = normalise(canvas)   # the source graph's input: RGB, (x - 127) / 128
    assert x.dtype == np.float32
    assert x[0, 120, 160].tolist() == pytest.approx([-127 / 128, -127 / 128, 1.0])
    assert abs(x[0, 10, 160]).max() < 0.01  # padding is the network's zero


def test_letterbox_of_a_large_photo_is_the_area_average_it_was(samples: Path) -> None:
    """A large photo is averaged down in two steps (a whole factor first, which OpenCV does
    fast): the network sees the same picture within a grey level or two, and the boxes map
    back to the photo's pixels; a frame at a whole factor is exactly as before."""
    photo_bgr = cv2.imread(str(samples / "photos" / "emma.jpg"))   # 3913x1901
    canvas, lb = letterbox(photo_bgr)
    h, w = photo_bgr.shape[:2]
    nw, nh = round(w * lb.sx), round(h * lb.sy)
    direct = cv2.resize(photo_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    ours = canvas[0, lb.dy:lb.dy + nh, lb.dx:lb.dx + nw].astype(np.int16)
    # The two steps place pixels up to a fraction of an input pixel differently (the columns
    # left out, the remainder's weights); the yardstick is the same picture moved by half a
    # pixel, measured on itself, so the bound does not depend on the photo or the CPU.
    half_pixel = cv2.warpAffine(direct, np.float32([[1, 0, 0.5], [0, 1, 0]]), (nw, nh),
                                borderMode=cv2.BORDER_REPLICATE)
    moved = np.mean(np.abs(half_pixel.astype(np.int16) - direct))
    assert np.mean(np.abs(ours - direct)) < moved and np.median(np.abs(ours - direct)) <= 1
    assert lb.sx == pytest.approx(320 / w, rel=0.01)
    frame = cv2.resize(photo_bgr, (640, 480))
    assert np.array_equal(letterbox(frame)[0][0], cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("k", [2, 3, 4, 6, 8, 12])
def test_a_frame_averaged_down_by_a_whole_factor_is_the_mean_of_its_blocks(k: int) -> None:
    """1280x720 is averaged by 4, a 12-megapixel photo by 12: in halvings (OpenCV's fast
    path), then the odd rest. Each step rounds to whole grey levels, which bounds how far a
    pixel may be from its block's exact mean (half a level per step), whatever the CPU."""
    from densehead.engine.detector import _average_blocks

    frame = np.random.default_rng(k).integers(0, 256, (k * 30, k * 40, 3), dtype=np.uint8)
    exact = frame.reshape(30, k, 40, k, 3).mean(axis=(1, 3))
    ours = _average_blocks(frame, k)
    steps, rest = 0, k
    while rest % 2 == 0:
        steps, rest = steps + 1, rest // 2
    steps += rest > 1
    assert ours.shape == (30, 40, 3) and ours.dtype == np.uint8
    assert np.abs(ours - exact).max() <= 0.5 * steps
    assert np.abs(ours - exact).mean() < 0.5


# emma.jpg is a collage of three photos of the same person: three faces.
@pytest.mark.parametrize("name, count", [("emma.jpg", 3), ("trump_hillary.jpg", 2),
                                         ("JianzhuGuo.jpg", 1)])
def test_photo_face_count(det: FaceDetector, samples: Path, name: str, count: int) -> None:
    img = photo(samples, name)
    boxes, scores = det(img)
    assert len(boxes) == count
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert np.all(np.diff(scores) <= 0), "sorted by score"
    h, w = img.shape[:2]
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= w
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= h
    # a face box is roughly square-ish and a sensible fraction of the picture
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all((bh / bw > 0.9) & (bh / bw < 2.0))


def test_emma_one_face_per_panel(det: FaceDetector, samples: Path) -> None:
    img = photo(samples, "emma.jpg")
    boxes, _ = det(img)
    panel = ((boxes[:, 0] + boxes[:, 2]) / 2 // (img.shape[1] / 3)).astype(int)
    assert sorted(panel.tolist()) == [0, 1, 2]


def test_many_faces_are_all_found(assets_dir: Path, samples: Path) -> None:
    """Seven faces in one picture (trump_hillary, emma, trump_hillary stacked) with room for
    eight: the best face's own overlapping boxes must not use up the room of the others."""
    det = FaceDetector(assets_dir / "RFB-320.tflite", max_faces=8)
    pair = photo(samples, "trump_hillary.jpg")
    emma = photo(samples, "emma.jpg")
    emma = cv2.resize(emma, (pair.shape[1], round(emma.shape[0] * pair.shape[1] / emma.shape[1])))
    boxes, _ = det(np.vstack([pair, emma, pair]))
    assert len(boxes) == 7
    three = FaceDetector(assets_dir / "RFB-320.tflite", max_faces=3)
    assert len(three(np.vstack([pair, emma, pair])).boxes) == 3


def test_aflw_top_box_matches_ground_truth(det: FaceDetector, samples: Path) -> None:
    images = json.loads((samples / "aflw2000" / "ground_truth.json").read_text())["images"]
    frontal = [e for e in images if abs(e["pose_deg"]["yaw"]) < 30]
    assert len(frontal) >= 30
    misses = []
    for e in frontal:
        boxes, _ = det(cv2.imread(str(samples / e["image"])))
        gt = np.array(e["gt_bbox_xyxy"])
        if len(boxes) == 0:
            misses.append((e["image"], "no face"))
            continue
        top = boxes[0]
        cx, cy = (top[0] + top[2]) / 2, (top[1] + top[3]) / 2
        inside = gt[0] <= cx <= gt[2] and gt[1] <= cy <= gt[3]
        if not (iou(top, gt) > 0.3 or inside):
            misses.append((e["image"], round(iou(top, gt), 2)))
    assert len(misses) <= len(frontal) // 20, misses


def test_blank_image_has_no_face(det: FaceDetector) -> None:
    boxes, scores = det(np.full((480, 640, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_gray_and_bgra_find_the_same_face(det: FaceDetector, samples: Path) -> None:
    img = photo(samples, "JianzhuGuo.jpg")
    ref, _ = det(img)
    gray, _ = det(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    bgra, _ = det(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    assert len(gray) == 1 and iou(gray[0], ref[0]) > 0.8
    assert len(bgra) == 1 and np.allclose(bgra, ref)


def test_bad_input(det: FaceDetector) -> None:
    with pytest.raises(ValueError, match="empty"):
        det(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        det(np.zeros((480, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        det(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        det(np.zeros((48, 64, 5), np.uint8))
    boxes, scores = det(np.full((3, 2, 3), 200, np.uint8))  # tiny: no crash, no face
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_annotated_picture_and_timing(det: FaceDetector, samples: Path,
                                      output_dir: Path) -> None:
    img = photo(samples, "trump_hillary.jpg")
    original = img.copy()
    boxes, scores = det(img)
    assert len(boxes) == 2, "the picture for people to look at must show both faces"
    for (x1, y1, x2, y2), s in zip(boxes.astype(int), scores):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
        cv2.putText(img, f"{s:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 0), 2)
    out = output_dir / "detector_trump_hillary.jpg"
    assert cv2.imwrite(str(out), img)
    x1, y1, x2, y2 = boxes[0].astype(int)
    assert (cv2.imread(str(out))[y1, x1:x2].astype(int) - original[y1, x1:x2]).any(), \
        "no box drawn where the face was found"

    # Not a speed assertion (benchmarks are not tests): recorded for people to read.
    frame = cv2.resize(photo(samples, "JianzhuGuo.jpg"), (640, 480))
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        det(frame)
        times.append(time.perf_counter() - t0)
    (output_dir / "detector_timing.txt").write_text(
        f"detect 640x480: median {np.median(times) * 1e3:.2f} ms, "
        f"min {min(times) * 1e3:.2f} ms over {len(times)} runs\n")


# --- the rewritten graph (densehead.weights.detector_graph) ---------------------------------

def test_the_rewritten_graph_finds_what_the_original_finds(det: FaceDetector, assets_dir: Path,
                                                           samples: Path) -> None:
    """Same faces, boxes and scores on the sample photos and the 61 AFLW2000 images as the
    converter's RFB-320.tflite. Both graphs compute the same sums in another order (batch norm
    folded into the weights, XNNPACK's fused kernels in place of TFLite's between partitions),
    so their outputs differ by float32 rounding: about 1e-5 of a regression, a few 1e-4 px of a
    box, on any CPU. 0.05 px and 1e-4 of a score leave room for another CPU's summation order
    and would still catch a wrong weight, a swapped colour or an off-by-one shape."""
    original = FaceDetector(assets_dir / "RFB-320.tflite")
    assert det.takes_pixels and not original.takes_pixels
    images = [*sorted((samples / "photos").glob("*.jpg")),
              *sorted((samples / "aflw2000").glob("*.jpg"))]
    assert len(images) >= 64
    faces = 0
    for path in images:
        image = cv2.imread(str(path))
        ours, theirs = det(image), original(image)
        assert len(ours.boxes) == len(theirs.boxes), path.name
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=0.05, err_msg=path.name)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4, err_msg=path.name)
        faces += len(ours.boxes)
    assert faces >= 60


def test_the_rewritten_graph_is_one_xnnpack_partition(graph: Path) -> None:
    """What the rewrite is for: the converter's dynamic reshapes and SPACE_TO_BATCH_ND split
    its graph into several delegate partitions with TFLite kernels between them."""
    from densehead.engine.runtime import TFLiteRunner

    ops = [op["op_name"] for op in TFLiteRunner(graph)._interpreter._get_ops_details()]
    assert ops.count("DELEGATE") == 1, ops
    assert not {"SHAPE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} & set(ops), ops


@pytest.mark.parametrize("damage", ["truncated", "one-byte"])
def test_the_cached_detector_is_reused_and_rebuilt_when_damaged(
        assets_dir: Path, tmp_path: Path, samples: Path, damage: str) -> None:
    source = assets_dir / "RFB-320.tflite"
    first = detector_tflite(source, tmp_path)
    written = first.stat().st_ino   # a graph compiled again is a new file renamed over it
    assert detector_tflite(source, tmp_path) == first and first.stat().st_ino == written
    good = first.read_bytes()
    assert good == detector_tflite_bytes(source)
    if damage == "truncated":
        first.write_bytes(good[: len(good) // 3])
    else:  # a weight changes: the runtime would load it and find the wrong faces
        first.write_bytes(good[:-1000] + bytes([good[-1000] ^ 0x40]) + good[-999:])
    again = detector_tflite(source, tmp_path)
    assert again.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [again.name]
    assert len(FaceDetector(again)(photo(samples, "JianzhuGuo.jpg")).boxes) == 1


def test_compiling_removes_the_graphs_nothing_used_for_a_month(assets_dir: Path,
                                                              tmp_path: Path) -> None:
    """The cache does not grow with every compiler change: a graph no version of densehead
    asked for in STALE_DAYS goes when a new one is compiled; one asked for lately stays."""
    month_ago = time.time() - (STALE_DAYS + 1) * 86_400
    forgotten = tmp_path / "mb05_120x120-0123456789abcdef-c1-0123456789abcdef.tflite"
    lately = tmp_path / "RFB-320-0123456789abcdef-c1-0123456789abcdef.tflite"
    someone_elses = tmp_path / "RFB-320.tflite"   # not a name densehead gives: never removed
    for path, when in ((forgotten, month_ago), (lately, time.time() - 86_400),
                       (someone_elses, month_ago)):
        path.write_bytes(b"an older compiler's graph")
        os.utime(path, (when, when))
    graph = detector_tflite(assets_dir / "RFB-320.tflite", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([graph.name, lately.name,
                                                                 someone_elses.name])
    # a graph in use stays: each time it is asked for counts as a use
    os.utime(graph, (month_ago, month_ago))
    assert detector_tflite(assets_dir / "RFB-320.tflite", tmp_path) == graph
    assert graph.stat().st_mtime > month_ago + STALE_DAYS * 86_400


def test_a_source_that_is_not_rfb320_is_named(assets_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "RFB-320.tflite"
    truncated.write_bytes((assets_dir / "RFB-320.tflite").read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="RFB-320.tflite"):
        detector_tflite(truncated, tmp_path / "compiled")
    other = tmp_path / "other.tflite"   # a valid TFLite graph, but the rewritten one
    other.write_bytes(detector_tflite_bytes(assets_dir / "RFB-320.tflite"))
    with pytest.raises(ModelFileError, match="not the UltraFace RFB-320 graph densehead rewrites"):
        detector_tflite(other, tmp_path / "compiled")
    assert not (tmp_path / "compiled").exists() or not list((tmp_path / "compiled").iterdir())
