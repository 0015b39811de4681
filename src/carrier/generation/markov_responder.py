"""Markov replies in the persona's voice.

The guild's chain (trained on its own humans) is seeded by the words of the message; with
probability ``persona_weight``, or while the guild chain is still empty, the reply comes from
a chain over the persona's own texts (lore, facts, bio, examples), read fresh from the
database for every reply so persona edits show at once.
"""

from __future__ import annotations

import random

from carrier.generation.markov import MarkovGenerator, TextChain
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.settings import MarkovSettings

STATUS_WORDS = 16


class MarkovResponder:
    name = "markov"

    def __init__(self, generator: MarkovGenerator, settings: MarkovSettings) -> None:
        self._generator = generator
        self._settings = settings

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText | None:
        seed = request.message_text or request.status_text or " ".join(request.persona.topics)
        # A status line is the persona musing, not the server talking: persona texts first.
        prefer_persona = request.purpose == "status" or rng.random() < self._settings.persona_weight
        order = ("persona", "guild") if prefer_persona else ("guild", "persona")
        for source in order:
            text = await self._from(source, request, seed, rng)
            if text:
                return GeneratedText(text, f"markov:{source}")
        return None

    async def _from(
        self, source: str, request: ReplyRequest, seed: str, rng: random.Random
    ) -> str | None:
        if source == "guild":
            if request.guild_id is None and request.channel_id is None:
                return None
            scope = request.guild_id or f"channel:{request.channel_id}"
            return await self._generator.generate(
                request.agent_id, scope, seed, rng, self._max_words(request)
            )
        texts = request.persona.texts()
        if not texts:
            return None
        chain = TextChain(texts, state_size=self._settings.state_size)
        return await chain.generate(seed, rng, self._max_words(request), self._settings.tries)

    def _max_words(self, request: ReplyRequest) -> int:
        return (
            min(STATUS_WORDS, self._settings.max_words)
            if request.purpose == "status"
            else (self._settings.max_words)
        )
