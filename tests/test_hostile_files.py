"""Hostile and damaged files: decompression bombs, broken model files, a damaged compiled cache,
ambiguous CSV sources. Each must end in one clear error (or a rebuild), never a crash."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_with_peak_rss
from paths import ROOT
from readers import read_csv

from densehead.core.errors import ImageError
from densehead.engine.face_model import MorphableModel
from densehead.io.image import decode_image, read_image
from densehead.weights.assets import ModelFileError
from densehead.weights.compile import (
    load_param_stats,
    regressor_tflite,
    regressor_tflite_bytes,
)

SIDE = 20000  # 400 megapixels: 1.2 GB as BGR, five times the limit


# ----------------------------------------------------------------- decompression bombs

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, channels: int, idat: bytes = b"") -> bytes:
    colour = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def header_only(fmt: str, width: int, height: int) -> bytes:
    """The first bytes of an image file of each format that claim a size and hold no pixels."""
    if fmt == "png":
        return png_bytes(width, height, 3)
    if fmt == "jpeg":  # SOI, then a baseline frame header
        return b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    if fmt == "bmp":
        dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + dib
    if fmt == "webp":  # extended format: 24-bit canvas size
        vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + \
            (height - 1).to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + 8 + 10) + b"WEBP" + b"VP8X" + \
            struct.pack("<I", 10) + vp8x
    if fmt == "tiff":  # one directory: width and length as LONGs
        entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 1)]
        ifd = struct.pack("<H", len(entries)) + b"".join(
            struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
        return b"II*\x00" + struct.pack("<I", 8) + ifd
    if fmt == "gif":  # the logical screen descriptor
        return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    raise ValueError(fmt)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "webp", "tiff", "gif"])
def test_header_claiming_400_megapixels_is_refused_undecoded(fmt: str, tmp_path: Path):
    data = header_only(fmt, SIDE, SIDE)
    assert len(data) < 100
    with pytest.raises(ImageError, match=rf"too large \({SIDE}x{SIDE}\).*80 megapixels"):
        decode_image(data, f"bomb.{fmt}")
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=rf"bomb\.{fmt} is too large"):
        read_image(path)


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, valid 20000x20000 grey PNG: 400 MB of pixels in under 2 MB of file."""
    deflate = zlib.compressobj(1)
    block, left = bytes(16 << 20), SIDE * (SIDE + 1)  # each row: filter byte + pixels
    parts = []
    while left:
        parts.append(deflate.compress(block[: min(left, len(block))]))
        left -= min(left, len(block))
    parts.append(deflate.flush())
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_bytes(SIDE, SIDE, 1, b"".join(parts)))
    return path


DECODE_IN_CHILD = """
import sys
from pathlib import Path
from densehead.core.errors import ImageError
from densehead.io.image import decode_image, read_image
path = Path(sys.argv[1])
for how in (lambda: read_image(path), lambda: decode_image(path.read_bytes(), path.name)):
    try:
        how()
        print("decoded")
    except ImageError as e:
        print("refused:", e)
"""


def test_png_bomb_is_refused_with_little_memory(png_bomb: Path):
    assert png_bomb.stat().st_size < 2 << 20
    printed, peak_mb = run_with_peak_rss(DECODE_IN_CHILD, str(png_bomb))
    assert printed.splitlines() == [f"refused: bomb.png is too large ({SIDE}x{SIDE}); the "
                                    "limit is 80 megapixels"] * 2
    assert peak_mb < 200  # decoding it would take 400 MB, as BGR 1.2 GB


def test_real_photos_still_decode(samples: Path):
    path = samples / "photos" / "JianzhuGuo.jpg"
    original = cv2.imread(str(path))
    np.testing.assert_array_equal(read_image(path), original)
    for ext in (".png", ".bmp", ".webp", ".tiff"):  # the other formats, losslessly
        ok, encoded = cv2.imencode(ext, original,
                                   [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else [])
        assert ok
        np.testing.assert_array_equal(decode_image(encoded.tobytes()), original)


def test_a_gif_is_read(samples: Path, tmp_path: Path):
    from helpers import shared_pipeline

    original = cv2.imread(str(samples / "photos" / "JianzhuGuo.jpg"))
    ok, encoded = cv2.imencode(".gif", original)
    assert ok
    path = tmp_path / "portrait.gif"
    path.write_bytes(encoded.tobytes())
    picture = read_image(path)
    # OpenCV writes GIFs with a fixed, dithered palette: 16 grey levels off on average here; a
    # picture that is not this photo would be off by over 50
    assert picture.shape == original.shape
    assert np.abs(picture.astype(int) - original).mean() < 25
    assert len(shared_pipeline()(picture).faces) == 1


def test_a_photo_cut_short_is_called_damaged(samples: Path):
    """Half a JPEG, as an interrupted download leaves it: the message says what happened."""
    data = (samples / "photos" / "emma.jpg").read_bytes()
    with pytest.raises(ImageError, match=r"half\.jpg is a 3913x1901 picture that cannot be "
                                         r"decoded: the file is damaged or cut short"):
        decode_image(data[:len(data) // 2], "half.jpg")


def test_unknown_format_is_refused_before_decoding():
    ok, ppm = cv2.imencode(".ppm", np.zeros((8, 8, 3), np.uint8))  # OpenCV reads it; we do not
    with pytest.raises(ImageError, match=r"not an image that can be read \(JPEG, PNG"):
        decode_image(ppm.tobytes(), "x.ppm")


# ----------------------------------------------------------------- broken model files

MODEL_FILES = ["RFB-320.tflite", "mb05_120x120.pth", "param_mean_std_62d_120x120.pkl",
               "bfm_noneck_v3.pkl", "tri.pkl"]


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "garbage":
        return np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    raise ValueError(how)


BROKEN = {"RFB-320.tflite": "truncated", "mb05_120x120.pth": "garbage",
          "param_mean_std_62d_120x120.pkl": "truncated", "bfm_noneck_v3.pkl": "garbage",
          "tri.pkl": "truncated"}


def test_cli_names_each_broken_model_file_in_one_line(samples: Path, assets_dir: Path,
                                                      tmp_path: Path):
    photo = samples / "photos" / "emma.jpg"
    home = tmp_path / "home"
    for broken, how in BROKEN.items():
        bad_assets = tmp_path / f"assets-{broken}"
        bad_assets.mkdir()
        for name in MODEL_FILES:
            if name != broken:
                (bad_assets / name).symlink_to(assets_dir / name)
        (bad_assets / broken).write_bytes(_damage((assets_dir / broken).read_bytes(), how))
        env = dict(os.environ, DENSEHEAD_ASSETS=str(bad_assets), DENSEHEAD_HOME=str(home))
        result = subprocess.run(
            [sys.executable, "-m", "densehead", "sparse", "-f", str(photo),
             "-o", str(tmp_path / "out.jpg")], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=300)
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("densehead: error:")]
        assert result.returncode == 1, (broken, result.stderr)
        assert "Traceback" not in result.stderr, (broken, result.stderr)
        assert len(errors) == 1, (broken, result.stderr)
        assert str(bad_assets / broken) in errors[0] and "unusable model file" in errors[0]
        assert "remove it from DENSEHEAD_ASSETS" in errors[0]  # and how to fix it
        assert not (tmp_path / "out.jpg").exists()


def _pickled(tmp_path: Path, name: str, obj: object) -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def test_wrong_contents_are_named(tmp_path: Path, assets_dir: Path):
    stats = load_param_stats(assets_dir / "param_mean_std_62d_120x120.pkl")
    cases = [  # (file, loader, what the message says)
        (_pickled(tmp_path, "p1.pkl", [1, 2, 3]), load_param_stats, "not a dict"),
        (_pickled(tmp_path, "p2.pkl", {"mean": stats[0]}), load_param_stats, "'mean' and 'std'"),
        (_pickled(tmp_path, "p3.pkl", {"mean": "x", "std": stats[1]}), load_param_stats,
         "'mean' is a str"),
        (_pickled(tmp_path, "b1.pkl", {"u": np.zeros(9)}), MorphableModel, "expected a dict"),
        (_pickled(tmp_path, "b2.pkl", {"u": np.zeros(9), "w_shp": np.zeros((9, 40)),
                                       "w_exp": np.zeros((6, 10)), "keypoints": np.arange(204)}),
         MorphableModel, "inconsistent shapes"),
        (_pickled(tmp_path, "b3.pkl", {"u": np.zeros(9), "w_shp": np.zeros((9, 40)),
                                       "w_exp": np.zeros((9, 10)), "keypoints": np.arange(204),
                                       "tri": np.zeros((3, 2), np.int32)}),
         MorphableModel, "keypoints must be 204 integer row indices below 9"),
        (_pickled(tmp_path, "b4.pkl", {"u": np.zeros(612), "w_shp": np.zeros((612, 40)),
                                       "w_exp": np.zeros((612, 10)), "keypoints": np.arange(204),
                                       "tri": np.array([[0], [1], [204]])}),
         MorphableModel, "triangle indices must lie in [0, 204)"),
    ]
    for path, loader, says in cases:
        with pytest.raises(ModelFileError) as info:
            loader(path)
        assert str(path) in str(info.value) and says in str(info.value), str(info.value)


def test_checkpoint_that_is_not_the_regressor(tmp_path: Path, assets_dir: Path):
    from test_checkpoint import write_torch_zip

    stats = assets_dir / "param_mean_std_62d_120x120.pkl"
    path = tmp_path / "other.pth"
    write_torch_zip(path, {"conv1.weight": np.zeros((8, 3, 3, 3), np.float32)})
    with pytest.raises(ModelFileError, match="not a 3DDFA_V2 MobileNetV1 regressor: bn1.weight"
                                             " is missing"):
        regressor_tflite_bytes(path, stats)


# ----------------------------------------------------------------- compiled cache

@pytest.mark.parametrize("damage", ["truncated", "one-byte"])
def test_damaged_compiled_cache_is_rebuilt(assets_dir: Path, tmp_path: Path, damage: str):
    from densehead.engine.runtime import TFLiteRunner

    checkpoint = assets_dir / "mb05_120x120.pth"
    stats = assets_dir / "param_mean_std_62d_120x120.pkl"
    first = regressor_tflite(checkpoint, stats, tmp_path)
    good = first.read_bytes()
    if damage == "truncated":
        first.write_bytes(good[: len(good) // 3])
    else:  # a weight changes: the runtime would load it and compute the wrong faces
        first.write_bytes(good[:-1000] + bytes([good[-1000] ^ 0x40]) + good[-999:])
    again = regressor_tflite(checkpoint, stats, tmp_path)
    assert again.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [again.name]
    assert TFLiteRunner(again).input_shape == (1, 120, 120, 3)


def test_tflite_load_error_names_the_file(tmp_path: Path, assets_dir: Path):
    from densehead.engine.runtime import TFLiteRunner

    path = tmp_path / "RFB-320.tflite"
    path.write_bytes((assets_dir / "RFB-320.tflite").read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="not a TFLite model") as info:
        TFLiteRunner(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------- CSV source

def test_read_csv_reads_a_file_named_by_a_string(tmp_path: Path):
    path = tmp_path / "series.csv"
    path.write_text("a,b\n1,2.5\n3,-0.125\n")
    for source in (str(path), path, path.read_text()):
        header, table = read_csv(source)
        assert header == ["a", "b"] and table.tolist() == [[1, 2.5], [3, -0.125]]
    with pytest.raises(FileNotFoundError, match="no such CSV file: missing.csv"):
        read_csv("missing.csv")
    with pytest.raises(ValueError, match="row 3 has 1 values"):
        read_csv("a,b\n1,2\n3\n")



@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_photo_is_read_the_way_viewers_show_it(orientation: int, samples: Path, tmp_path: Path):
    """A phone stores a portrait photo sideways and says in its EXIF orientation how to turn it:
    the faces must be fitted, and drawn, where the person sees them. Pillow's exif_transpose is
    how a viewer shows the file."""
    from PIL import Image, ImageOps

    picture = Image.open(samples / "photos" / "JianzhuGuo.jpg")
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"orientation{orientation}.jpg"
    picture.save(path, quality=95, exif=exif.tobytes())
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)))[:, :, ::-1]
    read = read_image(path)
    assert read.shape == shown.shape
    # the two decoders may round a pixel differently; a wrong turn differs by tens of levels
    assert np.abs(read.astype(int) - shown).mean() < 1


def test_a_float_tiff_is_refused_by_its_name(tmp_path: Path):
    path = tmp_path / "scan.tiff"
    assert cv2.imwrite(str(path), np.random.default_rng(0).random((32, 32, 3), np.float32))
    with pytest.raises(ImageError, match=r"scan.tiff: expected a uint8 image, got dtype float32"):
        read_image(path)


def test_no_path_at_all_is_a_message_not_a_type_error():
    from densehead.core.errors import VideoError
    from densehead.io.video import iter_frames

    with pytest.raises(ImageError, match="expected the path of an image, got NoneType"):
        read_image(None)
    with pytest.raises(VideoError, match="expected the path of a video, got NoneType"):
        next(iter_frames(None))
