"""AFLW2000-3D style annotations: images with 68 ground-truth landmarks and a head pose, read
from the dataset's .mat files or from a JSON manifest (../shared/samples/aflw2000)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.layout import N_LANDMARKS
from . import metrics as M


@dataclass
class Sample:
    name: str
    image: Path
    landmarks: np.ndarray            # (68, 2) as stored in the annotation (MATLAB, 1-based)
    yaw: float                       # ground-truth pose, degrees, dataset convention
    pitch: float
    roll: float
    roi_3ddfa: np.ndarray | None = None

    @property
    def bin(self) -> str:
        return M.yaw_bin(self.yaw)

    @property
    def in_range(self) -> bool:
        return M.pose_in_range(self.yaw, self.pitch, self.roll)

    @property
    def rotation(self) -> np.ndarray:
        return M.rotation_from_euler(self.yaw, self.pitch, self.roll)


def load_mat(path: Path) -> Sample:
    """One AFLW2000-3D annotation (pt3d_68, Pose_Para = [pitch, yaw, roll, ...] radians). A file
    that is not such an annotation is a ValueError naming it."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        m = loadmat(str(path))
        pitch, yaw, roll = np.degrees(np.asarray(m["Pose_Para"], float).ravel()[:3])
        landmarks = np.asarray(m["pt3d_68"], float)[:2].T.copy()
    except KeyError as error:
        raise ValueError(f"{path}: not an AFLW2000-3D annotation (it has no {error}; each .mat "
                         "needs pt3d_68 and Pose_Para)") from None
    except (MatReadError, TypeError, ValueError, IndexError) as error:
        raise ValueError(f"{path}: not an AFLW2000-3D annotation that can be read "
                         f"({error})") from None
    if landmarks.shape != (N_LANDMARKS, 2):
        raise ValueError(f"{path}: pt3d_68 holds {landmarks.shape[0]} points, expected "
                         f"{N_LANDMARKS}")
    return Sample(path.stem, _find_image(path), landmarks, float(yaw), float(pitch), float(roll))


def _find_image(mat: Path) -> Path:
    for ext in (".jpg", ".png", ".jpeg", ".JPG", ".PNG"):
        if mat.with_suffix(ext).exists():
            return mat.with_suffix(ext)
    raise FileNotFoundError(f"no image next to {mat}")


def load_manifest(path: Path) -> list[Sample]:
    """The JSON manifest of ../shared/samples/aflw2000/ground_truth.json. A manifest that lacks
    a key, or holds values of the wrong kind, is a ValueError naming the file and the entry."""
    try:
        images = json.loads(path.read_text())["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a densehead manifest (expected JSON with an \"images\" "
                         f"list; {type(error).__name__}: {error})") from None
    return [_manifest_sample(path, i, e) for i, e in enumerate(images)]


def _manifest_sample(path: Path, index: int, e: Any) -> Sample:
    try:
        pose = e["pose_deg"]
        roi = e.get("roi_box_3ddfa")
        landmarks = np.asarray(e["landmarks68"], float)[:, :2]
        if landmarks.shape != (N_LANDMARKS, 2):
            raise ValueError(f"landmarks68 has shape {landmarks.shape}, expected {N_LANDMARKS} "
                             "points")
        return Sample(Path(e["image"]).stem, _resolve_image(path.parent, e["image"]), landmarks,
                      float(pose["yaw"]), float(pose["pitch"]), float(pose["roll"]),
                      None if roi is None else np.asarray(roi, float).reshape(4))
    except KeyError as error:
        raise ValueError(f"{path}: entry {index} has no {error} (each image needs image, "
                         f"landmarks68 and pose_deg with yaw, pitch, roll)") from None
    except (TypeError, ValueError, IndexError, AttributeError) as error:
        raise ValueError(f"{path}: entry {index} is malformed: {error}") from None


def _resolve_image(base: Path, rel: str) -> Path:
    # Paths in the manifest are relative to the samples root (one level up), or to its folder.
    for cand in (base / rel, base.parent / rel, base / Path(rel).name):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"image {rel} (named in the manifest) not found near {base}")


def load_dataset(path: str | Path, source: str = "auto") -> list[Sample]:
    """A JSON manifest (file, or ground_truth.json in the folder) or a folder of .mat files.
    With source="auto" and both present, exact .mat landmarks are used and the manifest adds
    what the .mat files lack (the 3DDFA crops)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    if p.is_file() and p.suffix.lower() != ".json":
        raise ValueError(f"{p} is neither a folder of images with .mat annotations nor a JSON "
                         "manifest")
    manifest = p if p.is_file() else p / "ground_truth.json"
    mats = sorted(p.glob("*.mat")) if p.is_dir() else []
    if source == "manifest" or (source == "auto" and not mats):
        if not manifest.exists():
            raise FileNotFoundError(f"no .mat annotations and no manifest in {p}")
        return load_manifest(manifest)
    if not mats:
        raise FileNotFoundError(f"no .mat annotations in {p}")
    samples = [load_mat(m) for m in mats]
    if source == "auto" and manifest.exists():
        rois = {s.name: s.roi_3ddfa for s in load_manifest(manifest)}
        for s in samples:
            s.roi_3ddfa = rois.get(s.name)
    return samples


