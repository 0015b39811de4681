"""Finding a post among the account's recent media after its publish answer was lost: by
caption, type and time, never guessing between several candidates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carrier.clients.instagram.graph import PublishedMedia
from carrier.clients.instagram.poster import MediaMatch, match_media

T = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SINCE, UNTIL = T - timedelta(minutes=5), T + timedelta(minutes=10)


def media(
    id_: str,
    caption: str = "blub",
    at: datetime | None = T,
    media_type: str | None = "IMAGE",
    product: str | None = "FEED",
) -> PublishedMedia:
    return PublishedMedia(id_, caption, at, media_type, product)


def test_the_one_media_with_the_caption_in_the_window_is_the_post() -> None:
    recent = [media("new", "other"), media("ours"), media("old", at=T - timedelta(hours=1))]
    match = match_media(recent, caption="blub", media_kind="image", since=SINCE, until=UNTIL)
    assert match == MediaMatch(("ours",))
    assert match.media_id == "ours" and match.why_unknown() == ""


def test_the_window_bounds_are_inclusive_and_later_media_are_left_out() -> None:
    recent = [
        media("late", at=T + timedelta(minutes=10, seconds=1)),
        media("last", at=T + timedelta(minutes=10)),
        media("first", at=T - timedelta(minutes=5)),
        media("early", at=T - timedelta(minutes=5, seconds=1)),
    ]
    match = match_media(recent, caption="blub", media_kind="image", since=SINCE, until=UNTIL)
    assert match.candidates == ("last", "first")


def test_the_media_type_separates_images_from_reels() -> None:
    recent = [
        media("reel", media_type="VIDEO", product="REELS"),
        media("photo"),
        media("story", product="STORY"),
        media("album", media_type="CAROUSEL_ALBUM"),
    ]
    assert (
        match_media(recent, caption="blub", media_kind="image", since=SINCE, until=UNTIL).media_id
        == "photo"
    )
    assert (
        match_media(recent, caption="blub", media_kind="video", since=SINCE, until=UNTIL).media_id
        == "reel"
    )


def test_fields_the_api_did_not_send_rule_nothing_out() -> None:
    recent = [media("bare", at=None, media_type=None, product=None)]
    assert (
        match_media(recent, caption="blub", media_kind="video", since=SINCE, until=UNTIL).media_id
        == "bare"
    )


def test_media_recorded_for_other_posts_are_not_candidates() -> None:
    recent = [media("ours"), media("earlier-post")]
    match = match_media(
        recent,
        caption="blub",
        media_kind="image",
        exclude={"earlier-post"},
        since=SINCE,
        until=UNTIL,
    )
    assert match.media_id == "ours"


@pytest.mark.parametrize("caption", ["", "blub"])
def test_several_candidates_leave_the_id_unknown(caption: str) -> None:
    recent = [media("b", caption), media("a", caption), media("x", "something else")]
    match = match_media(recent, caption=caption, media_kind="image", since=SINCE, until=UNTIL)
    assert match.candidates == ("b", "a")
    assert match.media_id is None
    assert match.why_unknown() == (
        "its media id is unknown: 2 recent media (b, a) match its caption, type and time, "
        "so none was picked"
    )


def test_an_empty_caption_matches_only_media_without_one() -> None:
    recent = [media("captioned"), media("bare", "")]
    assert (
        match_media(recent, caption="", media_kind="image", since=SINCE, until=UNTIL).media_id
        == "bare"
    )
    # Surrounding whitespace is not a difference (Instagram may trim it).
    assert (
        match_media(recent, caption="  \n", media_kind="image", since=SINCE, until=UNTIL).media_id
        == "bare"
    )


def test_no_candidate_and_no_listing_are_explained() -> None:
    none = match_media(
        [media("x", "other")], caption="blub", media_kind="image", since=SINCE, until=UNTIL
    )
    assert none.media_id is None
    assert "none of the account's recent media matches" in none.why_unknown()
    unlisted = MediaMatch(listed=False, problem="Graph API GET /1/media is rate limited")
    assert unlisted.media_id is None
    assert unlisted.why_unknown() == (
        "its media id is unknown: the recent media could not be listed "
        "(Graph API GET /1/media is rate limited)"
    )
