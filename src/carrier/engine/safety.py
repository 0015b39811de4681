"""Mention safety and length limits: what may leave the bot.

No ``@everyone``, ``@here`` or role ping ever leaves the bot, whatever the generator wrote or
the chain learned.  Clients also pass the platform's own guard (discord.py
``AllowedMentions``); this is the platform-neutral half.
"""

from __future__ import annotations

import re

_ZWSP = "\u200b"
_MASS = re.compile(r"@(everyone|here)\b", re.IGNORECASE)
_ROLE = re.compile(r"<@&\d+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def neutralize_mentions(text: str) -> str:
    """Defuse mass and role mentions so they render as text and notify nobody."""
    text = _ROLE.sub("", text)
    return _MASS.sub(lambda m: "@" + _ZWSP + m.group(1), text)


def clean_text(text: str) -> str:
    """Valid UTF-8, no control characters (newlines and tabs kept)."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)


def clamp_length(text: str, limit: int) -> str:
    """Cut at a sentence or word boundary below ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    for boundary in (". ", "! ", "? ", "\n"):
        index = cut.rfind(boundary)
        if index > limit // 2:
            return cut[: index + 1].rstrip()
    index = cut.rfind(" ")
    if index > limit // 2:
        cut = cut[:index]
    return cut.rstrip() + "…"
