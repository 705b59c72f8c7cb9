"""The per-frame table: one row per face per frame, the same columns wherever results are
tabulated (the live page's CSV, the video page's export, `densehead batch`).

Rows are float64 numpy arrays while they are collected (cheap to append and slice); `to_frame`
gives a pandas DataFrame with whole-number columns as integers, `csv_text` the CSV and
`write_parquet` a Parquet file of that DataFrame.
"""
from __future__ import annotations

from typing import IO, TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from ..core.face import Face
from ..core.layout import N_EXPRESSION, N_LANDMARKS, N_SHAPE

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

POSE = ("yaw", "pitch", "roll")                       # degrees, see densehead.pose
BOX = ("box_x1", "box_y1", "box_x2", "box_y2")        # frame pixels
TRANSLATION = ("tx", "ty", "tz")                      # camera offset, crop space
EXPRESSION = tuple(f"exp_{i}" for i in range(N_EXPRESSION))
SHAPE = tuple(f"shape_{i}" for i in range(N_SHAPE))
LANDMARKS = tuple(f"lm{i}_{axis}" for i in range(N_LANDMARKS) for axis in "xyz")
COLUMNS = ("frame", "time_s", "track_id", "score", *BOX, *POSE, *TRANSLATION, "scale",
           *EXPRESSION, *SHAPE, *LANDMARKS)
COL = {name: i for i, name in enumerate(COLUMNS)}
INTEGER_COLUMNS = ("frame", "track_id")


def face_row(frame: int, time_s: float, face: Face) -> np.ndarray:
    """One row of COLUMNS for a face seen in frame number `frame` at `time_s` seconds."""
    return np.concatenate([
        [frame, time_s, face.track_id, face.score], np.asarray(face.box, float)[:4],
        [face.yaw, face.pitch, face.roll], np.asarray(face.translation, float)[:3], [face.scale],
        face.expression_coeffs, face.shape_coeffs,
        np.asarray(face.landmarks, float)[:N_LANDMARKS, :3].ravel(),
    ]).astype(np.float64)


def frame_rows(frame: int, time_s: float, faces: Sequence[Face]) -> list[np.ndarray]:
    return [face_row(frame, time_s, f) for f in faces]


def photo_rows(faces: Sequence[Face]) -> np.ndarray:
    """The table of one photo: frame 0 at time 0, one row per face, track_id the face's rank in
    the detector's order (best score first), so the faces of a photo are told apart."""
    table = stack(frame_rows(0, 0.0, faces))
    table[:, COL["track_id"]] = np.arange(len(table))
    return table


def stack(rows: Iterable[np.ndarray]) -> np.ndarray:
    """Rows -> float64 (n, len(COLUMNS)); no rows give shape (0, len(COLUMNS))."""
    rows = list(rows)
    if not rows:
        return np.zeros((0, len(COLUMNS)))
    return np.vstack(rows).reshape(-1, len(COLUMNS))


def split_tracks(table: np.ndarray) -> dict[int, np.ndarray]:
    """{track_id: rows of that track in time order}, tracks sorted by id."""
    if len(table) == 0:
        return {}
    ids = table[:, COL["track_id"]].astype(int)
    return {int(k): table[ids == k] for k in np.unique(ids)}


def to_frame(table: np.ndarray) -> "pd.DataFrame":
    """The table as a pandas DataFrame (frame and track_id as integers)."""
    import pandas as pd

    df = pd.DataFrame(np.asarray(table, dtype=np.float64).reshape(-1, len(COLUMNS)),
                      columns=list(COLUMNS))
    return df.astype({name: "int64" for name in INTEGER_COLUMNS})


def write_parquet(table: np.ndarray, where: "str | Path | IO[bytes]",
                  metadata: Mapping[str, str] | None = None) -> None:
    """The table as Parquet, one column per COLUMNS name with the types of `to_frame`;
    `metadata` is stored as key/value strings in the file's footer, readable without the rows.
    Built from the numpy columns directly: no pandas metadata (it would add ~70 kB a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.asarray(table, dtype=np.float64).reshape(-1, len(COLUMNS))
    arrays = [pa.array(np.ascontiguousarray(rows[:, i]).astype(
        np.int64 if name in INTEGER_COLUMNS else np.float64)) for i, name in enumerate(COLUMNS)]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(COLUMNS), metadata=metadata), where)


def read_parquet(path: "str | Path") -> "pd.DataFrame":
    """A table written by `write_parquet`, as the DataFrame `to_frame` gave."""
    import pandas as pd

    return pd.read_parquet(path)


def parquet_metadata(path: "str | Path") -> dict[str, str]:
    """The key/value metadata `write_parquet` stored (the file's footer only, not its rows).
    Raises OSError or pyarrow's ArrowInvalid for a file that is not Parquet."""
    import pyarrow.parquet as pq

    stored = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in stored.items() if not k.startswith(b"ARROW:")}


def csv_text(table: np.ndarray) -> str:
    """CSV with a header row: frame and track id as integers, time to 0.1 ms, the rest to 6
    significant digits (enough for pixels, degrees and coefficients)."""
    lines = [",".join(COLUMNS)]
    for row in np.asarray(table).reshape(-1, len(COLUMNS)):
        head = [str(int(row[0])), f"{row[1]:.4f}", str(int(row[2]))]
        lines.append(",".join(head + [f"{v:.6g}" for v in row[3:]]))
    return "\n".join(lines) + "\n"


def summary(table: np.ndarray) -> list[dict[str, float]]:
    """Per track: frame count, time span and mean/std/min/max of yaw, pitch, roll."""
    out: list[dict[str, float]] = []
    for tid, rows in split_tracks(table).items():
        item: dict[str, float] = {"track_id": tid, "frames": len(rows),
                                  "start_s": float(rows[0, COL["time_s"]]),
                                  "end_s": float(rows[-1, COL["time_s"]])}
        for name in POSE:
            col = rows[:, COL[name]]
            item.update({f"{name}_mean": float(col.mean()), f"{name}_std": float(col.std()),
                         f"{name}_min": float(col.min()), f"{name}_max": float(col.max())})
        out.append(item)
    return out
