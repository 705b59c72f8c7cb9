"""The model files densehead knows: each pinned to an upstream commit and git blob sha1 (and its
size, or a cap on it), and the set the product needs with each regressor.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.options import DEFAULT_FLOAT_REGRESSOR, INT8, REGRESSOR_NAMES

_3DDFA_V2 = ("cleardusk/3DDFA_V2", "1b6c67601abffc1e9f248b291708aef0e43b55ae")
_SCARLET = ("1996scarlet/Dense-Head-Pose-Estimation", "5f2376b3cf97bf514ee542c2f62d985d4cdfe53c")

# Each file's name, written once: the registry below is built from these, and code that needs
# a particular file imports its name from here.
DETECTOR_FILE = "RFB-320.tflite"
MB05_FILE = "mb05_120x120.pth"
MB1_FILE = "mb1_120x120.pth"
BFM_FILE = "bfm_noneck_v3.pkl"
STATS_FILE = "param_mean_std_62d_120x120.pkl"
TRI_FILE = "tri.pkl"
# Texture coordinates, needed only by the textured export (resolved on demand, so they are not
# in the default set; `fetch --all` includes them).
UV_FILE = "BFM_UV.mat"
INDICES_FILE = "indices.npy"


@dataclass(frozen=True)
class AssetSpec:
    """One upstream file pinned by commit and git blob sha1; size is checked when known.
    A file of unknown size has an upper bound instead, so that a download cannot grow forever."""

    name: str
    repo: str
    commit: str
    path: str
    sha1: str
    size: int | None = None
    max_size: int | None = None

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    @property
    def byte_cap(self) -> int:
        """The most bytes a download of this file may bring."""
        cap = self.size if self.size is not None else self.max_size
        if cap is None:
            raise ValueError(f"{self.name}: the registry needs a size or a max_size")
        return cap


def _spec(name: str, origin: tuple[str, str], folder: str, sha1: str,
          size: int | None = None, max_size: int | None = None) -> AssetSpec:
    """`name` as upstream keeps it: `folder/name` at `origin`'s pinned commit."""
    return AssetSpec(name, origin[0], origin[1], f"{folder}/{name}", sha1, size, max_size)


REGISTRY: dict[str, AssetSpec] = {s.name: s for s in (
    _spec(DETECTOR_FILE, _SCARLET, "weights", "a686effdaee0e32f25de591f3efa04786c5e2d4a",
          1_169_156),
    # size unknown offline: MobileNetV1 x1 is about 3.4 M float32 weights (~14 MB)
    _spec(MB1_FILE, _3DDFA_V2, "weights", "bb78e0cd616fa578febb725b4be3a3ddd546f6b4",
          max_size=64 << 20),
    _spec(MB05_FILE, _3DDFA_V2, "weights", "6b7be882d53da54cc84732b295695d5c89c93bc3",
          3_752_462),
    # size unknown offline: 115,095 x 51 float32 rows plus triangles (~24 MB)
    _spec(BFM_FILE, _3DDFA_V2, "configs", "7a44e1e29d658fc5d7303eb07cd820b23daab34a",
          max_size=128 << 20),
    _spec(STATS_FILE, _3DDFA_V2, "configs", "110c0f3eda9f7c610dd20a4ac96de848b76de443", 713),
    _spec(TRI_FILE, _3DDFA_V2, "configs", "31b52dcfb1a823649a6157f784ce39304c96ca6d", 913_040),
    _spec(UV_FILE, _3DDFA_V2, "configs", "fa205443b62307647358facf6fd92b13166d0d86", 779_401),
    _spec(INDICES_FILE, _3DDFA_V2, "configs", "8dc0fbd5fcd3f46528ce0c8cb40fd5fa8432bed4",
          153_588),
)}

# The files the product needs: one of the regressors' checkpoint, and the rest always.
FLOAT_REGRESSORS = {"mb05": MB05_FILE, "mb1": MB1_FILE}
REGRESSORS = {name: FLOAT_REGRESSORS[name.removesuffix(INT8)] for name in REGRESSOR_NAMES}
_COMMON = (DETECTOR_FILE, BFM_FILE, STATS_FILE, TRI_FILE)


def default_names(regressor: str = DEFAULT_FLOAT_REGRESSOR) -> tuple[str, ...]:
    """The files the product needs, with the chosen regressor ('mb05', 'mb05-int8' or 'mb1')."""
    if regressor not in REGRESSORS:
        raise ValueError(f"unknown regressor {regressor!r}; choose one of {sorted(REGRESSORS)}")
    return (_COMMON[0], REGRESSORS[regressor], *_COMMON[1:])


DEFAULT_NAMES = default_names()
