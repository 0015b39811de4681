"""Splitting a reply into Discord messages: each under 2,000 characters, cut where a
sentence ends when possible, else at a line break, else between words."""

from __future__ import annotations

import re

DISCORD_LIMIT = 2000
CHUNK_LIMIT = 1990
"""A little under Discord's limit, so a chunk never trips it."""

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")


def split_message(text: str, limit: int = CHUNK_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, in order, none empty.

    A piece ends at the last sentence boundary that fits (a ``.``, ``!``, ``?`` or ``…``
    followed by space); failing that at the last line break, then the last space, and only
    for a single word longer than ``limit`` in the middle of it.
    """
    if limit < 10:
        raise ValueError("limit must be at least 10 characters")
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        cut = _cut_at(text, limit)
        piece = text[:cut].rstrip()
        if piece:
            pieces.append(piece)
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _cut_at(text: str, limit: int) -> int:
    window = text[: limit + 1]
    # Cuts in the first third would leave tiny pieces; prefer a later, weaker boundary.
    floor = limit // 3
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] > floor:
        return ends[-1]
    newline = window.rfind("\n", 0, limit)
    if newline > floor:
        return newline + 1
    space = window.rfind(" ", 0, limit)
    if space > 0:
        return space + 1
    return limit
