"""Small real media files for the Instagram tests: JPEGs by Pillow, MP4/MOV files built
box by box (ISO base media format), so no ffmpeg is needed."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from PIL import Image


def jpeg(
    path: Path,
    width: int = 1080,
    height: int = 1080,
    *,
    seed: int = 0,
    noise: bool = False,
    orientation: int | None = None,
) -> Path:
    """A JPEG of ``width`` x ``height``; ``noise`` makes it large (hard to compress)."""
    rng = random.Random(seed)
    if noise:
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (rng.randrange(256), 90, 160))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif)
    return path


def mpo(path: Path, width: int = 1080, height: int = 1080, *, frames: int = 2) -> Path:
    """A Multi-Picture Object (CIPA DC-007, "extended JPEG", as stereo cameras write): JPEG
    frames in one file, which starts with the JPEG signature like any JPEG."""
    images = [Image.new("RGB", (width, height), (30 * i, 90, 160)) for i in range(frames)]
    images[0].save(path, "MPO", save_all=True, append_images=images[1:], quality=90)
    return path


def png(path: Path, width: int = 1080, height: int = 1080) -> Path:
    Image.new("RGB", (width, height), (10, 20, 30)).save(path, "PNG")
    return path


def _box(name: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), name) + payload


def _full(version: int = 0, flags: int = 0) -> bytes:
    return bytes([version]) + flags.to_bytes(3, "big")


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def video(
    path: Path,
    *,
    seconds: float = 5.0,
    width: int = 1080,
    height: int = 1920,
    brand: bytes = b"isom",
    moov_first: bool = True,
    payload_bytes: int = 4096,
    seed: int = 0,
) -> Path:
    """An MP4 (or MOV with ``brand=b"qt  "``) with one video track of the given size and
    duration; the media data is random bytes (no decoder reads it here)."""
    timescale = 1000
    duration = int(seconds * timescale)
    mvhd = (
        _full()
        + struct.pack(">IIII", 0, 0, timescale, duration)
        + struct.pack(">IH", 0x10000, 0x100)
        + bytes(10)
        + _MATRIX
        + bytes(24)
        + struct.pack(">I", 2)
    )
    tkhd = (
        _full(0, 3)
        + struct.pack(">IIIII", 0, 0, 1, 0, duration)
        + bytes(8)
        + struct.pack(">hhhH", 0, 0, 0, 0)
        + _MATRIX
        + struct.pack(">II", width << 16, height << 16)
    )
    mdhd = _full() + struct.pack(">IIIIHH", 0, 0, timescale, duration, 0x55C4, 0)
    hdlr = _full() + bytes(4) + b"vide" + bytes(12) + b"VideoHandler\x00"
    trak = _box(
        b"trak", _box(b"tkhd", tkhd) + _box(b"mdia", _box(b"mdhd", mdhd) + _box(b"hdlr", hdlr))
    )
    moov = _box(b"moov", _box(b"mvhd", mvhd) + trak)
    ftyp = _box(b"ftyp", brand + bytes(4) + brand + b"mp41")
    mdat = _box(b"mdat", random.Random(seed).randbytes(payload_bytes))
    path.write_bytes(ftyp + (moov + mdat if moov_first else mdat + moov))
    return path
