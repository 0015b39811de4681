"""Captions written in the persona's voice.

The caption comes from the responder chain, like any message the bot speaks up with on its
own: the LLM providers when configured, the Markov chain of the persona's own texts
otherwise (and a persona line as the last resort, so there is always a caption).  It is
asked as a ``proactive`` message whose status is "sharing a new post on Instagram", then
fitted to Instagram's caption limits (length, hashtags, @-mentions).
"""

from __future__ import annotations

import random
import re
from typing import Protocol

from carrier.clients.instagram.validation import (
    HASHTAG,
    MENTION,
    MediaLimits,
    check_caption,
)
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.persona.service import Persona

_MASS_MENTION = re.compile(r"@(everyone|here)\b", re.IGNORECASE)


class CaptionResponder(Protocol):
    """What writes the caption: :class:`carrier.generation.responder.ResponderChain`."""

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText: ...


async def write_caption(
    responder: CaptionResponder,
    persona: Persona,
    agent_id: str,
    *,
    about: str = "",
    limits: MediaLimits | None = None,
    rng: random.Random | None = None,
) -> str:
    """A caption in ``persona``'s voice, optionally about ``about`` (what the media shows)."""
    topic = about.strip()
    request = ReplyRequest(
        purpose="proactive",
        agent_id=agent_id,
        persona=persona,
        message_text=topic,
        status_text="sharing a new post on Instagram" + (f": {topic}" if topic else ""),
    )
    generated = await responder.generate(request, rng or random.Random())
    return fit_caption(generated.text, limits or MediaLimits())


def fit_caption(text: str, limits: MediaLimits) -> str:
    """``text`` trimmed to Instagram's limits: hashtags and @-mentions beyond the allowed
    number lose their ``#``/``@``, mass mentions are defused, the length is cut at a word."""
    text = _MASS_MENTION.sub(r"\1", text.strip())
    text = _keep_first(HASHTAG, text, limits.max_hashtags, "#")
    text = _keep_first(MENTION, text, limits.max_mentions, "@")
    if len(text) > limits.max_caption_chars:
        cut = text[: limits.max_caption_chars - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limits.max_caption_chars // 2 else cut).rstrip() + "…"
    return check_caption(text, limits)


def _keep_first(pattern: re.Pattern[str], text: str, allowed: int, sigil: str) -> str:
    seen = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal seen
        seen += 1
        return match.group(0) if seen <= allowed else match.group(0).removeprefix(sigil)

    return pattern.sub(replace, text)
