"""Checks made before anything is uploaded: the file, and the caption.

The limits are Instagram's published ones for the Content Publishing API:

* **Images** — IG User Media reference, "Image Specifications"
  (developers.facebook.com/docs/instagram-api/reference/ig-user/media): format JPEG only
  (the Content Publishing guide adds that extended JPEG formats such as MPO and JPS are not
  supported); file size 8 MB maximum; aspect ratio within 4:5 to 1.91:1; width 320..1440
  (scaled by Instagram, so not rejected here).
* **Videos** are published as reels (Content Publishing guide: since July 1, 2023 single
  feed videos are shared as reels; ``media_type=REELS``).  IG User Media reference, "Reels
  Specifications": container MOV or MP4 (MPEG-4 Part 14) with the moov atom at the front of
  the file; duration 3 seconds minimum, 15 minutes maximum; aspect ratio 0.01:1 to 10:1
  (9:16 recommended); file size 300 MB maximum in the reference we checked (newer
  third-party summaries quote 1 GB, so ``instagram.max_video_mb`` can raise it).
* **Captions** — IG User Media reference, ``caption`` parameter: at most 2,200 characters,
  30 hashtags and 20 @-mentions.

File types are recognised by their content (magic bytes, then Pillow or the MP4 atom tree),
never by the file name's extension.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from carrier.settings import InstagramSettings

MediaKind = Literal["image", "video"]

MAX_CAPTION_CHARS = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MIN_IMAGE_RATIO = 4 / 5
MAX_IMAGE_RATIO = 1.91
MIN_VIDEO_SECONDS = 3.0
MAX_VIDEO_SECONDS = 15 * 60.0
MIN_VIDEO_RATIO = 0.01
MAX_VIDEO_RATIO = 10.0
DEFAULT_MAX_VIDEO_MB = 300

HASHTAG = re.compile(r"(?<![\w#&])#(\w+)")
MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_.]*[A-Za-z0-9_])")

# ISO base media brands of MP4 files (ftyp major/compatible brands); QuickTime is "qt  ".
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V "}
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"})
_HASH_CHUNK = 1024 * 1024


class MediaRejected(ValueError):
    """The file or caption cannot be posted; the message says why and what is allowed."""


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """Instagram's limits, some of them tightened or loosened by configuration."""

    max_caption_chars: int = MAX_CAPTION_CHARS
    max_hashtags: int = MAX_HASHTAGS
    max_mentions: int = MAX_MENTIONS
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_video_bytes: int = DEFAULT_MAX_VIDEO_MB * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: InstagramSettings) -> MediaLimits:
        return cls(
            max_hashtags=settings.max_hashtags,
            max_mentions=settings.max_mentions,
            max_video_bytes=settings.max_video_mb * 1024 * 1024,
        )


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A file that passed every check, with what the upload and the Graph API need."""

    path: Path
    kind: MediaKind
    mime_type: str
    extension: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    duration_seconds: float | None = None


# -- captions -------------------------------------------------------------------------------


def hashtags(caption: str) -> list[str]:
    return HASHTAG.findall(caption)


def mentions(caption: str) -> list[str]:
    return MENTION.findall(caption)


def check_caption(caption: str, limits: MediaLimits = MediaLimits()) -> str:
    """Return ``caption`` unchanged, or raise :class:`MediaRejected` naming the limit."""
    problems = []
    if len(caption) > limits.max_caption_chars:
        problems.append(
            f"the caption is {len(caption)} characters long; Instagram allows at most "
            f"{limits.max_caption_chars}"
        )
    tags = len(hashtags(caption))
    if tags > limits.max_hashtags:
        problems.append(f"the caption has {tags} hashtags; at most {limits.max_hashtags} allowed")
    names = len(mentions(caption))
    if names > limits.max_mentions:
        problems.append(
            f"the caption has {names} @-mentions; at most {limits.max_mentions} allowed"
        )
    if problems:
        raise MediaRejected("; ".join(problems))
    return caption


# -- files ----------------------------------------------------------------------------------


def inspect_media(path: Path, limits: MediaLimits = MediaLimits()) -> MediaFile:
    """Check ``path`` against Instagram's limits and describe it; raise :class:`MediaRejected`.

    Reads the file only (nothing is uploaded or changed).
    """
    if not path.exists():
        raise MediaRejected(f"{path} does not exist")
    if not path.is_file():
        raise MediaRejected(f"{path} is not a regular file")
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise MediaRejected(f"{path} cannot be read: {exc.strerror or exc}") from None
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected(f"{path} is empty")
    kind = _sniff(head)
    if kind == "jpeg":
        return _inspect_jpeg(path, size, limits)
    if kind in ("mp4", "mov"):
        return _inspect_video(path, size, kind, limits)
    raise MediaRejected(
        f"{path} is {kind}, which Instagram cannot publish; post a JPEG image, or an MP4 or "
        "MOV video (published as a reel)"
    )


def _sniff(head: bytes) -> str:
    """What the first bytes say the file is (a format name, or a description)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "a HEIF/HEIC/AVIF image"
        if brand == b"qt  ":
            return "mov"
        if brand in _MP4_BRANDS:
            return "mp4"
        if brand.startswith(b"3g"):
            return "a 3GPP video"
        return "an MPEG-4 family file of an unsupported kind"
    for magic, name in (
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"BM", "a BMP image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
        (b"%PDF", "a PDF document"),
    ):
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI video"
    return "not an image or video format Carrier recognises"


def _inspect_jpeg(path: Path, size: int, limits: MediaLimits) -> MediaFile:
    from PIL import Image, UnidentifiedImageError

    if size > limits.max_image_bytes:
        raise MediaRejected(
            f"{path} is {_megabytes(size)}; Instagram accepts images up to "
            f"{_megabytes(limits.max_image_bytes)}"
        )
    try:
        with Image.open(path) as image:
            image_format = image.format
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaRejected(f"{path} is not a readable JPEG image: {exc}") from None
    if image_format != "JPEG":
        raise MediaRejected(
            f"{path} is an extended JPEG ({image_format}); Instagram accepts plain JPEG only"
        )
    if orientation in (5, 6, 7, 8):
        # Rotated by its EXIF orientation: shown (and cropped) with width and height swapped.
        width, height = height, width
    ratio = width / height
    if not MIN_IMAGE_RATIO - 1e-3 <= ratio <= MAX_IMAGE_RATIO + 1e-3:
        raise MediaRejected(
            f"{path} is {width}x{height} (aspect ratio {ratio:.2f}:1); Instagram accepts images "
            "from 4:5 (0.80:1, portrait) to 1.91:1 (landscape); crop it"
        )
    return MediaFile(
        path=path,
        kind="image",
        mime_type="image/jpeg",
        extension=".jpg",
        size_bytes=size,
        sha256=file_sha256(path),
        width=width,
        height=height,
    )


def _inspect_video(path: Path, size: int, kind: str, limits: MediaLimits) -> MediaFile:
    if size > limits.max_video_bytes:
        raise MediaRejected(
            f"{path} is {_megabytes(size)}; videos may be at most "
            f"{_megabytes(limits.max_video_bytes)}"
        )
    info = read_video_info(path)
    if info.moov_after_mdat:
        raise MediaRejected(
            f"{path} has its index (moov atom) at the end; Instagram needs it at the front of "
            "the file (re-encode with `ffmpeg -i IN -c copy -movflags +faststart OUT`)"
        )
    if info.width <= 0 or info.height <= 0:
        raise MediaRejected(f"{path} has no video track with a picture size")
    if not MIN_VIDEO_SECONDS <= info.duration_seconds <= MAX_VIDEO_SECONDS:
        raise MediaRejected(
            f"{path} lasts {info.duration_seconds:.1f} s; reels must last from "
            f"{MIN_VIDEO_SECONDS:.0f} seconds to {MAX_VIDEO_SECONDS / 60:.0f} minutes"
        )
    ratio = info.width / info.height
    if not MIN_VIDEO_RATIO <= ratio <= MAX_VIDEO_RATIO:
        raise MediaRejected(
            f"{path} is {info.width}x{info.height}; reels need an aspect ratio between 0.01:1 "
            "and 10:1 (9:16 recommended)"
        )
    return MediaFile(
        path=path,
        kind="video",
        mime_type="video/quicktime" if kind == "mov" else "video/mp4",
        extension=".mov" if kind == "mov" else ".mp4",
        size_bytes=size,
        sha256=file_sha256(path),
        width=info.width,
        height=info.height,
        duration_seconds=info.duration_seconds,
    )


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_seconds: float
    width: int
    height: int
    moov_after_mdat: bool


def read_video_info(path: Path) -> VideoInfo:
    """Duration (``mvhd``), picture size (the video track's ``tkhd``) and atom order of an
    MP4/MOV file, read with mutagen's atom parser (no ffmpeg needed)."""
    from mutagen.mp4 import Atoms  # type: ignore[attr-defined]  # public, not in __all__

    try:
        with path.open("rb") as handle:
            atoms = Atoms(handle)
            top = [atom.name for atom in atoms.atoms]
            moov = atoms[b"moov"]
            ok, mvhd = moov[b"mvhd",].read(handle)
            if not ok:
                raise ValueError("truncated mvhd")
            duration = _mvhd_duration(mvhd)
            width = height = 0
            for trak in moov.findall(b"trak"):
                ok, hdlr = trak[b"mdia", b"hdlr"].read(handle)
                if ok and hdlr[8:12] == b"vide":
                    ok, tkhd = trak[b"tkhd",].read(handle)
                    if ok:
                        width, height = _tkhd_size(tkhd)
                    break
    except Exception as exc:  # mutagen's AtomError, KeyError for a missing atom, struct.error
        raise MediaRejected(f"{path} is not a readable MP4/MOV video: {exc}") from None
    moov_after_mdat = b"mdat" in top and top.index(b"mdat") < top.index(b"moov")
    return VideoInfo(duration, width, height, moov_after_mdat)


def _mvhd_duration(data: bytes) -> float:
    version = data[0]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", data[20:32])
    else:
        timescale, duration = struct.unpack(">II", data[12:20])
    if timescale <= 0:
        raise ValueError("mvhd has no timescale")
    return float(duration) / float(timescale)


def _tkhd_size(data: bytes) -> tuple[int, int]:
    # The last 8 bytes of a track header are width and height as 16.16 fixed point.
    width, height = struct.unpack(">II", data[-8:])
    return width >> 16, height >> 16


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def validate_post(path: Path, caption: str, limits: MediaLimits = MediaLimits()) -> MediaFile:
    """Both checks, the caption first (it is cheap): what ``post`` runs before uploading."""
    check_caption(caption, limits)
    return inspect_media(path, limits)
