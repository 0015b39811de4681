"""Generation modes: ``markov``, ``llm`` and ``hybrid``, per agent and per channel.

- markov: the guild's Markov chain (or the persona's own texts) only;
- llm: the LLM provider chain, falling back to Markov on any failure;
- hybrid: as llm, and the prompt carries a few lines the guild's chain generated for this
  message, as samples of the server's voice.

Whatever the mode, a reply that is owed is given: the responder chain ends in Markov and a
last-resort persona line.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Literal

from carrier.generation.markov import MarkovGenerator
from carrier.generation.markov_responder import MarkovResponder
from carrier.generation.request import GeneratedText, ReplyRequest
from carrier.generation.responder import Generator, ResponderChain

Mode = Literal["markov", "llm", "hybrid"]
MODES: tuple[Mode, ...] = ("markov", "llm", "hybrid")


class ModalResponder:
    def __init__(
        self,
        markov: MarkovResponder,
        markov_chain: MarkovGenerator,
        llm: Generator | None,
        *,
        default_mode: Mode,
        hybrid_samples: int,
    ) -> None:
        self._markov_only = ResponderChain([markov])
        self._llm = llm
        self._with_llm = ResponderChain([llm, markov]) if llm is not None else None
        self._chain = markov_chain
        self.default_mode: Mode = default_mode if llm is not None else "markov"
        self._samples = hybrid_samples

    def mode_for(self, channel_mode: str | None) -> Mode:
        """The channel's mode if it has one (and an LLM exists), else the agent's."""
        if self._with_llm is None:
            return "markov"
        if channel_mode in MODES:
            return channel_mode
        return self.default_mode

    async def generate(
        self, request: ReplyRequest, rng: random.Random, mode: Mode | None = None
    ) -> GeneratedText:
        mode = mode or self.default_mode
        if mode == "markov" or self._with_llm is None:
            return await self._markov_only.generate(request, rng)
        if mode == "hybrid" and self._samples and request.guild_id is not None:
            request = replace(request, voice_samples=await self._voice(request, rng))
        return await self._with_llm.generate(request, rng)

    async def _voice(self, request: ReplyRequest, rng: random.Random) -> tuple[str, ...]:
        assert request.guild_id is not None
        seed = request.message_text or request.status_text
        samples = await self._chain.generate_many(
            request.agent_id, request.guild_id, seed, rng, self._samples
        )
        return tuple(samples)

    async def aclose(self) -> None:
        """Close the LLM providers' HTTP clients."""
        close = getattr(self._llm, "aclose", None)
        if close is not None:
            await close()
