"""Image files and uploads into frames (densehead.core.frames.as_bgr gives their form).

Image files are sized from their header before anything is decoded: a 20000x20000 PNG takes
a megabyte on disk and 1.2 GB once decoded, so the size limit must act before the decoder.
The formats accepted are those the product lists (JPEG, PNG, BMP, WebP, TIFF, GIF); their headers
are simple enough to read here, which spares the library an imaging dependency (Pillow).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable

import cv2
import numpy as np

from ..core.errors import ImageError
from ..core.files import missing_file
from ..core.frames import MAX_PIXELS, as_bgr

FORMATS = "JPEG, PNG, BMP, WebP, TIFF, GIF"

Reader = Callable[[int, int], bytes]  # (offset, count) -> at most count bytes from there


# --- sizes from file headers ----------------------------------------------------------------

def _u(data: bytes, offset: int, fmt: str) -> int:
    return struct.unpack_from(fmt, data, offset)[0]


def _png_size(read: Reader) -> tuple[int, int] | None:
    head = read(0, 24)  # signature, then the IHDR chunk, which must come first
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return _u(head, 16, ">I"), _u(head, 20, ">I")


# frame headers (SOF0..SOF15) carry the size; C4, C8 and CC are other markers in that range
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(read: Reader) -> tuple[int, int] | None:
    pos = 2  # after SOI
    while True:
        head = read(pos, 9)
        if len(head) < 2:
            return None
        if head[0] != 0xFF:  # stray bytes between segments, which libjpeg skips as well
            block = read(pos, 1 << 16)
            skip = block.find(b"\xff")
            pos += skip if skip > 0 else len(block)
            if not block:
                return None
            continue
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        elif marker in _JPEG_SOF:
            return (_u(head, 7, ">H"), _u(head, 5, ">H")) if len(head) == 9 else None
        elif marker in (0xD9, 0xDA) or len(head) < 4:  # end of image or scan before a frame
            return None
        else:
            pos += 2 + _u(head, 2, ">H")


def _bmp_size(read: Reader) -> tuple[int, int] | None:
    head = read(0, 26)
    if len(head) < 26:
        return None
    if _u(head, 14, "<I") == 12:  # OS/2 BITMAPCOREHEADER
        return _u(head, 18, "<H"), _u(head, 20, "<H")
    return abs(_u(head, 18, "<i")), abs(_u(head, 22, "<i"))  # negative height: top-down


def _webp_size(read: Reader) -> tuple[int, int] | None:
    head = read(0, 30)
    if len(head) < 30 or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return _u(head, 26, "<H") & 0x3FFF, _u(head, 28, "<H") & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit width-1, height-1
        bits = _u(head, 21, "<I")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        return (int.from_bytes(head[24:27], "little") + 1,
                int.from_bytes(head[27:30], "little") + 1)
    return None


def _tiff_size(read: Reader) -> tuple[int, int] | None:
    """Width and height tags of the first image directory (the one OpenCV decodes)."""
    head = read(0, 16)
    if len(head) < 16:
        return None
    order = "<" if head[:2] == b"II" else ">"
    big = _u(head, 2, order + "H") == 43  # BigTIFF: 64-bit offsets and counts
    count_fmt, entry_size, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
    ifd = _u(head, 8, order + "Q") if big else _u(head, 4, order + "I")
    count_bytes = read(ifd, struct.calcsize(count_fmt))
    if len(count_bytes) < struct.calcsize(count_fmt):
        return None
    count = min(_u(count_bytes, 0, order + count_fmt), 4096)  # real files have a few dozen
    entries = read(ifd + len(count_bytes), count * entry_size)
    value_fmt = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    found: dict[int, int] = {}
    for at in range(0, len(entries) - entry_size + 1, entry_size):
        tag, kind = struct.unpack_from(order + "HH", entries, at)
        if tag in (256, 257) and kind in value_fmt:  # ImageWidth, ImageLength
            found[tag] = _u(entries, at + value_at, order + value_fmt[kind])
    return (found[256], found[257]) if len(found) == 2 else None


def _gif_size(read: Reader) -> tuple[int, int] | None:
    """The logical screen's size (an animated GIF is read as its first frame)."""
    head = read(0, 10)
    return (_u(head, 6, "<H"), _u(head, 8, "<H")) if len(head) == 10 else None


_SIGNATURES: list[tuple[bytes, Callable[[Reader], tuple[int, int] | None]]] = [
    (b"\x89PNG\r\n\x1a\n", _png_size),
    (b"\xff\xd8", _jpeg_size),
    (b"BM", _bmp_size),
    (b"RIFF", _webp_size),
    (b"II*\x00", _tiff_size), (b"MM\x00*", _tiff_size),
    (b"II+\x00", _tiff_size), (b"MM\x00+", _tiff_size),
    (b"GIF87a", _gif_size), (b"GIF89a", _gif_size),
]


def header_size(read: Reader) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG, BMP, WebP, TIFF or GIF, without decoding;
    None when the bytes start like none of them or the header is cut short."""
    start = read(0, 8)
    for signature, size in _SIGNATURES:
        if start.startswith(signature):
            return size(read)
    return None


def bytes_reader(data: bytes | bytearray | memoryview) -> Reader:
    view = memoryview(data)
    return lambda offset, count: view[offset:offset + count].tobytes()


def file_reader(f: BinaryIO) -> Reader:
    def read(offset: int, count: int) -> bytes:
        f.seek(offset)
        return f.read(count)
    return read


def check_header(read: Reader, name: str) -> tuple[int, int]:
    """Refuse, before any decoding, what is not one of our formats or is too large."""
    size = header_size(read)
    if size is None:
        raise ImageError(f"{name} is not an image that can be read ({FORMATS})")
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name} is too large ({width}x{height}); the limit is "
                         f"{MAX_PIXELS // 1_000_000} megapixels")
    return size


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode image file bytes (JPEG, PNG, ...) to BGR, or raise ImageError saying why not.
    The size is read from the header first: an oversized image is refused undecoded."""
    if not data:
        raise ImageError(f"{name} is empty")
    width, height = check_header(bytes_reader(data), name)
    # COLOR turns the picture the way its EXIF orientation says, as viewers show it (a phone's
    # portrait photo is stored sideways); UNCHANGED would not. Alpha is dropped either way.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8),
                         cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:   # its header is a picture's: what follows is not
        raise ImageError(f"{name} is a {width}x{height} picture that cannot be decoded: the file "
                         "is damaged or cut short (an interrupted download or copy?)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF
        image = (image >> 8).astype(np.uint8)
    try:
        return as_bgr(image)
    except ImageError as error:   # a float TIFF, say: the file's name says which upload
        raise ImageError(f"{name}: {error}") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8, or raise ImageError with a message for the user."""
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError(f"expected the path of an image, got {type(path).__name__}")
    path = Path(path)
    problem = missing_file(path)
    if problem:
        raise ImageError(problem)
    with path.open("rb") as f:
        if path.stat().st_size:  # an oversized image is refused before its bytes are read
            check_header(file_reader(f), path.name)
        f.seek(0)
        data = f.read()
    return decode_image(data, path.name)
