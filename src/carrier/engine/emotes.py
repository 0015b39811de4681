"""Custom emotes: ``:name:`` becomes the guild's markup, unknown names are dropped."""

from __future__ import annotations

import re
from collections.abc import Mapping

_SHORTCODE = re.compile(r"(?<![<\w]):([A-Za-z0-9_]{2,32}):(?!\d)")


def render_emotes(text: str, emotes: Mapping[str, str]) -> str:
    """Replace ``:name:`` with the guild's emote markup; drop names the guild lacks.

    Markup that is already platform-formatted (``<:name:123>``) is left alone.
    """

    def swap(match: re.Match[str]) -> str:
        return emotes.get(match.group(1), "")

    rendered = _SHORTCODE.sub(swap, text)
    return re.sub(r"[ \t]{2,}", " ", rendered).strip()
