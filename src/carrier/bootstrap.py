"""The one wiring place: settings -> store -> memory, generation -> engine.

The CLI, the terminal client and (later) the Discord bot and the HTTP app all build what they
need here; nothing is built at import time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.settings import Settings
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.store import Store

if TYPE_CHECKING:
    from carrier.engine.pipeline import Engine


def build_engine(settings: Settings) -> AsyncEngine:
    return create_engine(
        settings.effective_database_url,
        echo=settings.database.echo,
        busy_timeout_ms=settings.database.busy_timeout_ms,
    )


def open_store(settings: Settings) -> Store:
    """A Store on the configured database; the schema is not touched."""
    return Store(build_engine(settings))


async def open_migrated_store(settings: Settings) -> Store:
    """A Store whose schema has been upgraded to the newest migration."""
    store = open_store(settings)
    try:
        await upgrade(store.engine)
    except BaseException:
        await store.close()
        raise
    return store


async def prepare_store(settings: Settings) -> Store:
    """Migrated store with the agent row and, on first start, the persona imported."""
    from carrier.persona.service import ensure_persona

    store = await open_migrated_store(settings)
    try:
        await store.agents.ensure(settings.agent.id, settings.agent.id)
        await ensure_persona(store, settings.agent.id, settings.agent.character_file)
    except BaseException:
        await store.close()
        raise
    return store


def build_engine_for(
    settings: Settings,
    store: Store,
    bot_user_id: str,
    *,
    clock: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
) -> Engine:
    """The engine for ``settings.agent``, wired over ``store``."""
    from carrier.engine.mood import MoodService
    from carrier.engine.pipeline import Engine, EngineParts, utc_now
    from carrier.engine.rate_limits import RateLimiter
    from carrier.engine.recorder import Recorder
    from carrier.engine.relationships import RelationshipService, VaderSentiment
    from carrier.generation.markov import MarkovGenerator
    from carrier.generation.markov_responder import MarkovResponder
    from carrier.generation.responder import ResponderChain
    from carrier.memory.short_term import ShortTermMemory

    rng = rng or random.Random()
    markov = MarkovGenerator(store.markov, settings.markov)
    parts = EngineParts(
        store=store,
        settings=settings.engine,
        short_term=ShortTermMemory(store, settings.engine.short_term_hours),
        markov=markov,
        relationships=RelationshipService(store, settings.relationships, VaderSentiment()),
        mood=MoodService(store, settings.mood.timezone, rng),
        responder=ResponderChain([MarkovResponder(markov, settings.markov)]),
        rate_limiter=RateLimiter(settings.rate_limits),
        recorder=Recorder(store, markov),
    )
    return Engine(
        settings.agent.id,
        bot_user_id,
        parts,
        clock=clock or utc_now,
        rng=rng,
        extra_names=tuple(settings.agent.nicknames),
    )
