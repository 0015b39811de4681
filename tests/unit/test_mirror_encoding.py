"""The Redis mirror's members: one message always gives the same bytes, and reads back whole."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from carrier.memory.redis_mirror import _decode, _encode
from carrier.store.messages import LoggedMessage

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=3))]
)
optional = st.none() | st.text()
messages = st.builds(
    LoggedMessage,
    agent_id=st.text(),
    channel_id=st.text(),
    message_id=st.text(),
    author_id=st.text(),
    author_name=st.text(),
    text=st.text(),
    created_at=st.datetimes(timezones=zones),
    guild_id=optional,
    author_is_bot=st.booleans(),
    is_self=st.booleans(),
    reply_to_message_id=optional,
    reply_to_author_id=optional,
    answered_reason=optional,
)


def standard_library(message: LoggedMessage) -> bytes:
    """How members were written before orjson: a member mirrored then and rebuilt now must be
    the same member, not a second copy of the message."""
    data = asdict(message)
    data["created_at"] = message.created_at.isoformat()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=500)
@given(messages)
def test_a_member_is_the_standard_librarys_json_byte_for_byte(message: LoggedMessage) -> None:
    assert _encode(message) == standard_library(message)
    assert _decode(_encode(message)) == message


def test_text_that_is_not_valid_unicode_is_escaped_and_reads_back() -> None:
    lone = LoggedMessage(
        "fish",
        "chan",
        "m1",
        "u1",
        "Bob\ud800",
        "half a pair: \udfff",
        datetime(2026, 12, 4, tzinfo=UTC),
    )
    member = _encode(lone)
    assert member.isascii() and b"\\ud800" in member
    assert _decode(member) == lone
    assert _encode(lone) == member
