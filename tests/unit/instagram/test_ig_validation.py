"""Validation before any upload: file type by content, size, aspect ratio, duration, caption."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_samples import jpeg, mpo, png, video

from carrier.clients.instagram.validation import (
    MAX_CAPTION_CHARS,
    MAX_IMAGE_BYTES,
    MediaLimits,
    MediaRejected,
    check_caption,
    file_sha256,
    hashtags,
    inspect_media,
    mentions,
    validate_post,
)
from carrier.settings import InstagramSettings


@pytest.mark.parametrize(("width", "height"), [(1080, 1080), (1080, 1350), (1910, 1000)])
def test_jpegs_within_4_5_to_1_91_are_accepted(tmp_path: Path, width: int, height: int) -> None:
    path = jpeg(tmp_path / "photo.jpg", width, height)
    media = inspect_media(path)
    assert (media.kind, media.mime_type, media.extension) == ("image", "image/jpeg", ".jpg")
    assert (media.width, media.height) == (width, height)
    assert media.size_bytes == path.stat().st_size
    assert media.sha256 == file_sha256(path)


@pytest.mark.parametrize(("width", "height"), [(1080, 1920), (1000, 1300), (2000, 1000)])
def test_jpegs_outside_the_aspect_ratio_range_are_rejected(
    tmp_path: Path, width: int, height: int
) -> None:
    with pytest.raises(MediaRejected, match=r"4:5 .* to 1\.91:1") as caught:
        inspect_media(jpeg(tmp_path / "photo.jpg", width, height))
    assert f"{width}x{height}" in str(caught.value)


def test_the_exif_orientation_decides_the_shown_aspect_ratio(tmp_path: Path) -> None:
    # Stored landscape (16:9, fine), but rotated by EXIF into a 9:16 portrait: too tall.
    assert inspect_media(jpeg(tmp_path / "plain.jpg", 1920, 1080)).width == 1920
    with pytest.raises(MediaRejected, match="1080x1920"):
        inspect_media(jpeg(tmp_path / "rotated.jpg", 1920, 1080, orientation=6))


def test_the_type_comes_from_the_content_not_the_extension(tmp_path: Path) -> None:
    disguised_png = png(tmp_path / "photo.jpg")
    with pytest.raises(MediaRejected, match="is a PNG image, which Instagram cannot publish"):
        inspect_media(disguised_png)
    real_jpeg = jpeg(tmp_path / "picture.png")
    assert inspect_media(real_jpeg).kind == "image"
    named_txt_video = video(tmp_path / "clip.txt")
    assert inspect_media(named_txt_video).kind == "video"


def test_an_mpo_extended_jpeg_is_rejected_though_it_starts_like_a_jpeg(tmp_path: Path) -> None:
    photo = mpo(tmp_path / "stereo.jpg")
    assert photo.read_bytes()[:3] == b"\xff\xd8\xff"  # the JPEG signature: magic bytes pass
    with pytest.raises(MediaRejected, match=r"extended JPEG \(MPO\).*plain JPEG only"):
        inspect_media(photo)


@pytest.mark.parametrize(
    ("content", "described"),
    [
        (b"GIF89a" + bytes(64), "a GIF image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(64), "a WebP image"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIF/HEIC/AVIF"),
        (b"\x1aE\xdf\xa3" + bytes(64), "Matroska/WebM"),
        (b"hello, this is text\n" * 4, "not an image or video format"),
    ],
)
def test_unsupported_formats_are_named(tmp_path: Path, content: bytes, described: str) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(MediaRejected, match="JPEG image, or an MP4 or MOV video") as caught:
        inspect_media(path)
    assert described in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match=r"nowhere\.jpg does not exist"):
        inspect_media(tmp_path / "nowhere.jpg")


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match="not a regular file"):
        inspect_media(tmp_path)


def test_an_unreadable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jpeg(tmp_path / "locked.jpg")

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    # chmod cannot stop root (tests may run as root): refuse the open itself.
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(MediaRejected, match="cannot be read: Permission denied"):
        inspect_media(path)


def test_empty_and_truncated_files_are_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MediaRejected, match="is empty"):
        inspect_media(empty)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg(tmp_path / "whole.jpg").read_bytes()[:40])
    with pytest.raises(MediaRejected, match="not a readable JPEG"):
        inspect_media(truncated)


def test_images_over_the_size_limit_are_rejected(tmp_path: Path) -> None:
    assert MAX_IMAGE_BYTES == 8 * 1024 * 1024
    path = jpeg(tmp_path / "big.jpg", noise=True)
    limits = MediaLimits(max_image_bytes=path.stat().st_size - 1)
    with pytest.raises(MediaRejected, match="accepts images up to"):
        inspect_media(path, limits)
    assert inspect_media(path, MediaLimits(max_image_bytes=path.stat().st_size)).kind == "image"


@pytest.mark.parametrize(
    ("brand", "mime", "extension"),
    [
        (b"isom", "video/mp4", ".mp4"),
        (b"mp42", "video/mp4", ".mp4"),
        (b"qt  ", "video/quicktime", ".mov"),
    ],
)
def test_mp4_and_mov_videos_are_read(
    tmp_path: Path, brand: bytes, mime: str, extension: str
) -> None:
    media = inspect_media(
        video(tmp_path / "clip", seconds=12.5, width=720, height=1280, brand=brand)
    )
    assert (media.kind, media.mime_type, media.extension) == ("video", mime, extension)
    assert media.duration_seconds == pytest.approx(12.5)
    assert (media.width, media.height) == (720, 1280)


@pytest.mark.parametrize(
    ("seconds", "ok"), [(2.9, False), (3.0, True), (900.0, True), (900.5, False)]
)
def test_reels_last_3_seconds_to_15_minutes(tmp_path: Path, seconds: float, ok: bool) -> None:
    path = video(tmp_path / "clip.mp4", seconds=seconds)
    if ok:
        assert inspect_media(path).duration_seconds == pytest.approx(seconds)
    else:
        with pytest.raises(MediaRejected, match="from 3 seconds to 15 minutes"):
            inspect_media(path)


def test_a_video_with_its_index_at_the_end_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match="faststart"):
        inspect_media(video(tmp_path / "clip.mp4", moov_first=False))


def test_a_video_with_an_impossible_aspect_ratio_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match=r"0\.01:1 and 10:1"):
        inspect_media(video(tmp_path / "strip.mp4", width=1920, height=150))


def test_videos_over_the_size_limit_are_rejected(tmp_path: Path) -> None:
    path = video(tmp_path / "clip.mp4", payload_bytes=20_000)
    with pytest.raises(MediaRejected, match="videos may be at most"):
        inspect_media(path, MediaLimits(max_video_bytes=10_000))
    settings_limits = MediaLimits.from_settings(InstagramSettings(max_video_mb=2))
    assert settings_limits.max_video_bytes == 2 * 1024 * 1024


def test_an_mp4_without_its_index_is_not_readable(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x14ftypisom\x00\x00\x00\x00isom" + bytes(100))
    with pytest.raises(MediaRejected, match="not a readable MP4/MOV video"):
        inspect_media(path)


# -- captions ---------------------------------------------------------------------------


def test_caption_length_limit_is_2200_characters() -> None:
    assert MAX_CAPTION_CHARS == 2200
    assert check_caption("x" * 2200) == "x" * 2200
    with pytest.raises(MediaRejected, match="2201 characters long; Instagram allows at most 2200"):
        check_caption("x" * 2201)


def test_at_most_30_hashtags() -> None:
    thirty = " ".join(f"#tag{i}" for i in range(30))
    assert check_caption(thirty) == thirty
    with pytest.raises(MediaRejected, match="31 hashtags; at most 30"):
        check_caption(thirty + " #one_more")


def test_at_most_20_mentions() -> None:
    twenty = " ".join(f"@user.{i}" for i in range(20))
    assert check_caption(twenty) == twenty
    with pytest.raises(MediaRejected, match="21 @-mentions; at most 20"):
        check_caption(twenty + " @extra_one")


def test_configured_hashtag_limit_applies() -> None:
    limits = MediaLimits.from_settings(InstagramSettings(max_hashtags=5))
    check_caption("#a #b #c #d #e", limits)
    with pytest.raises(MediaRejected, match="6 hashtags; at most 5"):
        check_caption("#a #b #c #d #e #f", limits)


def test_what_counts_as_a_hashtag_or_mention() -> None:
    text = "mail fish@sea.org, see issue#4 and &#39; #real @real_fish @ alone"
    assert hashtags(text) == ["real"]
    assert mentions(text) == ["real_fish"]


def test_every_caption_problem_is_reported_at_once() -> None:
    caption = "x" * 2200 + " " + " ".join(f"#t{i}" for i in range(31))
    with pytest.raises(MediaRejected) as caught:
        check_caption(caption)
    assert "characters long" in str(caught.value)
    assert "31 hashtags" in str(caught.value)


def test_validate_post_checks_the_caption_before_reading_the_file(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected, match="characters long"):
        validate_post(tmp_path / "not-there.jpg", "x" * 3000)
    media = validate_post(jpeg(tmp_path / "ok.jpg"), "Blub #fish")
    assert media.kind == "image"
