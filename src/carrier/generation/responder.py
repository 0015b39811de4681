"""The responder: an ordered chain of generators with a fallback that never goes silent.

The chain is tried in order; a generator that fails (raises) or has nothing to say (returns
``None``) hands over to the next.  The last resort is a line from the persona itself, so a
reply that is owed is always given.  LLM providers slot in front of the Markov generator.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Protocol

from carrier.generation.request import GeneratedText, ReplyRequest

log = logging.getLogger(__name__)


class Generator(Protocol):
    """One way of producing text.  Contract: return ``None`` when there is nothing good to
    say; raise on failure (the chain logs it and falls back)."""

    name: str

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText | None: ...


class ResponderChain:
    def __init__(self, generators: Sequence[Generator]) -> None:
        self._generators = list(generators)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self._generators]

    async def generate(self, request: ReplyRequest, rng: random.Random) -> GeneratedText:
        for generator in self._generators:
            try:
                result = await generator.generate(request, rng)
            except Exception:
                log.exception("generator %s failed; falling back", generator.name)
                continue
            if result is not None and result.text.strip():
                return result
        return last_resort(request, rng)


def last_resort(request: ReplyRequest, rng: random.Random) -> GeneratedText:
    """Something in character when every generator came up empty."""
    persona = request.persona
    traits = [t for t in persona.traits if t.strip()]
    lines = [
        f"*{persona.name} blinks thoughtfully*",
        f"*{persona.name} tilts its head*",
    ]
    if traits:
        lines.append(f"*looks {rng.choice(traits)}*")
    return GeneratedText(rng.choice(lines), "fallback:persona")
