"""Captions in the persona's voice, fitted to Instagram's limits."""

from __future__ import annotations

import random

import pytest

from carrier.clients.instagram.caption import fit_caption, write_caption
from carrier.clients.instagram.validation import MediaLimits, check_caption, hashtags, mentions
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.persona.service import Persona


class RecordingResponder:
    """Answers with a fixed text and keeps the requests (the responder chain's contract)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[ReplyRequest] = []

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText:
        self.requests.append(request)
        return GeneratedText(self.text, "test")


PERSONA = Persona(name="Finnegan", traits=("curious",), topics=("the sea",))


async def test_the_caption_is_asked_as_a_proactive_message_about_the_post() -> None:
    responder = RecordingResponder("Blub! The sea was loud today #fish")
    caption = await write_caption(responder, PERSONA, "fish", about="a wave", rng=random.Random(1))
    assert caption == "Blub! The sea was loud today #fish"
    (request,) = responder.requests
    assert request.purpose == "proactive"
    assert request.agent_id == "fish"
    assert request.persona is PERSONA
    assert request.message_text == "a wave"
    assert request.status_text == "sharing a new post on Instagram: a wave"


async def test_a_generated_caption_is_fitted_to_the_limits() -> None:
    long_text = "word " * 600 + " ".join(f"#t{i}" for i in range(40))
    caption = await write_caption(RecordingResponder(long_text), PERSONA, "fish")
    assert len(caption) <= 2200
    check_caption(caption)


def test_extra_hashtags_and_mentions_lose_their_sigil() -> None:
    limits = MediaLimits(max_hashtags=2, max_mentions=1)
    caption = fit_caption("#one #two #three hi @ann @bob", limits)
    assert caption == "#one #two three hi @ann bob"
    assert hashtags(caption) == ["one", "two"]
    assert mentions(caption) == ["ann"]


def test_mass_mentions_are_defused() -> None:
    assert fit_caption("hello @everyone and @here", MediaLimits()) == "hello everyone and here"


def test_long_text_is_cut_at_a_word_with_an_ellipsis() -> None:
    caption = fit_caption("blub " * 1000, MediaLimits(max_caption_chars=50))
    assert len(caption) <= 50
    assert caption.endswith("blub…")


@pytest.mark.parametrize("text", ["", "   "])
def test_blank_text_gives_an_empty_caption(text: str) -> None:
    assert fit_caption(text, MediaLimits()) == ""
