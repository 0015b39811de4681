"""The one wiring place: settings -> store -> memory, generation -> engine.

The CLI, the terminal client and (later) the Discord bot and the HTTP app all build what they
need here; nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.metrics import Metrics
from carrier.settings import Settings
from carrier.store.database import DatabaseError, create_engine, is_sqlite
from carrier.store.migrate import upgrade
from carrier.store.store import Store

if TYPE_CHECKING:
    import ssl

    import httpx2

    from carrier.clients.instagram.client import InstagramClient
    from carrier.engine.pipeline import Engine, EngineObserver
    from carrier.generation.llm.generator import LLMGenerator
    from carrier.generation.responder import Generator
    from carrier.generation.usage import UsageRecorder
    from carrier.memory.api import Memory

log = logging.getLogger(__name__)


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


MAX_CONNECT_PAUSE = 30.0


def _unreachable(error: DatabaseError, settings: Settings) -> bool:
    """A server database that refused or could not be reached (worth another try); a bad
    SQLite file or a broken schema is not."""
    if is_sqlite(settings.effective_database_url):
        return False
    text = str(error)
    return text.startswith("cannot connect to") or " is unavailable: " in text


async def open_store_with_retries(settings: Settings) -> Store:
    """:func:`open_migrated_store`, trying a PostgreSQL that cannot be reached again
    (``database.connect_attempts`` in all, the pause doubling from
    ``database.connect_retry_seconds``), with a log line per failed attempt (the error as
    :class:`DatabaseError` words it: never the password).  The last failure is raised."""
    options = settings.database
    pause = options.connect_retry_seconds
    for attempt in range(1, options.connect_attempts + 1):
        try:
            return await open_migrated_store(settings)
        except DatabaseError as exc:
            if attempt >= options.connect_attempts or not _unreachable(exc, settings):
                raise
            log.warning(
                "database not reachable (attempt %d of %d), trying again in %.1f s: %s",
                attempt,
                options.connect_attempts,
                pause,
                exc,
            )
        await asyncio.sleep(pause)
        pause = min(MAX_CONNECT_PAUSE, pause * 2)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def prepare_store(settings: Settings) -> Store:
    """Migrated store with the agent row and, on first start, the persona imported.  A
    PostgreSQL that cannot be reached yet is tried again (:func:`open_store_with_retries`)."""
    from carrier.persona.service import ensure_persona

    store = await open_store_with_retries(settings)
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
    metrics: Metrics | None = None,
    llm: Generator | None = None,
    memory: Memory | None = None,
    observers: Sequence[EngineObserver] | None = None,
) -> Engine:
    """The engine for ``settings.agent``, wired over ``store``.

    ``llm`` replaces the configured provider chain (tests, benchmarks); by default the chain
    of ``settings.llm.providers`` is built, with its usage recorded in the database.
    ``observers`` replaces the default observers: the outbound webhooks when
    ``settings.webhooks.urls`` are configured.
    """
    from carrier.engine.mood import MoodService
    from carrier.engine.pipeline import Engine, EngineParts, utc_now
    from carrier.engine.rate_limits import RateLimiter, redis_storage
    from carrier.engine.recorder import Recorder
    from carrier.engine.relationships import RelationshipService, VaderSentiment
    from carrier.generation.markov import MarkovGenerator
    from carrier.generation.markov_responder import MarkovResponder
    from carrier.generation.modes import ModalResponder
    from carrier.memory.redis_mirror import RedisMirror
    from carrier.memory.short_term import ShortTermMemory

    rng = rng or random.Random()
    metrics = metrics or Metrics()
    markov = MarkovGenerator(store.markov, settings.markov)
    relationships = RelationshipService(store, settings.relationships, VaderSentiment())
    mirror = (
        RedisMirror.from_url(
            settings.redis_url.get_secret_value(),
            window=timedelta(hours=settings.engine.short_term_hours),
        )
        if settings.redis_url
        else None
    )
    if memory is not None and memory.mirror is None:
        memory.mirror = mirror  # so "forget me" clears the user from the mirror too
    usage = None
    if llm is None and settings.llm.providers:
        usage = build_usage_recorder(settings, store, metrics)
        llm = build_llm(settings, store, metrics, usage)
    parts = EngineParts(
        store=store,
        settings=settings.engine,
        short_term=ShortTermMemory(store, settings.engine.short_term_hours, mirror),
        markov=markov,
        relationships=relationships,
        mood=MoodService(store, settings.mood.timezone, rng),
        responder=ModalResponder(
            MarkovResponder(markov, settings.markov),
            markov,
            llm,
            # An LLM handed in without configured providers (tests, benchmarks) is used too.
            default_mode=settings.llm.mode or ("llm" if llm is not None else "markov"),
            hybrid_samples=settings.llm.hybrid_samples,
        ),
        rate_limiter=RateLimiter(
            settings.rate_limits,
            redis_storage(settings.redis_url.get_secret_value()) if settings.redis_url else None,
        ),
        recorder=Recorder(store, markov, relationships, mirror=mirror),
        metrics=metrics,
        usage=usage,
        memory=memory,
        observers=tuple(build_observers(settings) if observers is None else observers),
    )
    return Engine(
        settings.agent.id,
        bot_user_id,
        parts,
        clock=clock or utc_now,
        rng=rng,
        extra_names=tuple(settings.agent.nicknames),
    )


def build_observers(settings: Settings) -> list[EngineObserver]:
    """What is told about every reply and consolidation: the outbound webhooks, when
    configured (raises :class:`~carrier.settings.ConfigError` naming the variable if their
    secret is unset)."""
    if not settings.webhooks.urls:
        return []
    from carrier.webhooks import WebhookDispatcher

    return [WebhookDispatcher.from_settings(settings.agent.id, settings.webhooks)]


def build_usage_recorder(settings: Settings, store: Store, metrics: Metrics) -> UsageRecorder:
    """The LLM usage ledger and counters, with the configured price overrides."""
    from carrier.generation.pricing import Price
    from carrier.generation.usage import UsageRecorder

    prices = {
        model: Price(p.input_per_million, p.output_per_million)
        for model, p in settings.llm.prices.items()
    }
    return UsageRecorder(store, settings.agent.id, metrics, prices)


def build_llm(
    settings: Settings, store: Store, metrics: Metrics, usage: UsageRecorder | None = None
) -> LLMGenerator:
    """The configured LLM provider chain, its usage recorded in the ledger and metrics."""
    from carrier.generation.llm.generator import LLMGenerator
    from carrier.settings import llm_api_keys

    return LLMGenerator.from_settings(
        settings.llm,
        llm_api_keys(settings.llm),
        on_usage=usage or build_usage_recorder(settings, store, metrics),
        max_reply_chars=settings.engine.max_reply_chars,
        max_transcript_tokens=settings.engine.context_token_budget,
    )


def build_instagram_client(
    settings: Settings,
    store: Store,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    ssl_context: ssl.SSLContext | None = None,
    llm: Generator | None = None,
    clock: Callable[[], datetime] | None = None,
) -> InstagramClient:
    """Instagram posting for ``settings.agent``.

    Credentials come from ``environ`` (default: the environment over ``.env``); a missing
    one raises :class:`~carrier.clients.instagram.credentials.MissingCredentials` naming
    it.  ``transport`` and ``ssl_context`` let tests point the Graph API client and the FTPS
    connection at local stand-ins; ``llm`` replaces the configured provider chain for
    captions.  Close the client with ``aclose()``.
    """
    from carrier.clients.instagram.client import InstagramClient
    from carrier.clients.instagram.credentials import load_credentials
    from carrier.clients.instagram.ftp import FtpUploader
    from carrier.clients.instagram.graph import GraphClient
    from carrier.clients.instagram.poster import InstagramPoster, utc_now
    from carrier.clients.instagram.queue import PublishQueue
    from carrier.clients.instagram.validation import MediaLimits
    from carrier.generation.markov import MarkovGenerator
    from carrier.generation.markov_responder import MarkovResponder
    from carrier.generation.modes import ModalResponder
    from carrier.persona.service import load_persona

    credentials = load_credentials(environ)
    options = settings.instagram
    clock = clock or utc_now
    graph = GraphClient(
        credentials.account_id,
        credentials.access_token,
        base_url=options.graph_api_url,
        api_version=options.graph_api_version,
        transport=transport,
    )
    uploader = FtpUploader(
        credentials.ftp_server,
        credentials.ftp_username,
        credentials.ftp_password,
        folder=options.ftp_folder,
        tls=options.ftp_tls,
        timeout=options.ftp_timeout_seconds,
        attempts=options.upload_attempts,
        ssl_context=ssl_context,
    )
    poster = InstagramPoster(
        store.instagram,
        graph,
        uploader,
        credentials.http_server,
        limits=MediaLimits.from_settings(options),
        poll_interval=options.poll_interval_seconds,
        poll_timeout=options.poll_timeout_seconds,
        clock=clock,
    )
    queue = PublishQueue(
        store.instagram, graph, poster, posts_per_24h=options.posts_per_24h, clock=clock
    )
    closers: list[Callable[[], Awaitable[None]]] = [graph.aclose]
    if llm is None and settings.llm.providers:
        built = build_llm(settings, store, Metrics())
        closers.append(built.aclose)
        llm = built
    markov = MarkovGenerator(store.markov, settings.markov)
    responder = ModalResponder(
        MarkovResponder(markov, settings.markov),
        markov,
        llm,
        # An injected ``llm`` is used unless the configuration asks for Markov only.
        default_mode=settings.llm.mode or ("llm" if llm is not None else "markov"),
        hybrid_samples=0,
    )
    agent_id = settings.agent.id
    return InstagramClient(
        agent_id,
        store.instagram,
        poster,
        queue,
        responder=responder,
        persona=lambda: load_persona(store, agent_id),
        clock=clock,
        closers=tuple(closers),
    )


async def open_memory(
    settings: Settings, store: Store, *, llm: LLMGenerator | None = None
) -> Memory:
    """The memory API over ``store``: the configured embedder (loaded off the event loop)
    and vector index, ``settings.memory``'s options, and while the stored vectors move to a
    newly configured model, the previous model for queries (carrier.memory.maintenance).

    With LLM providers configured (or ``llm`` given), facts are extracted by the LLM and it
    judges contradictions; the offline extractor and rule take over whenever it fails.
    """
    from carrier.memory.api import Memory
    from carrier.memory.consolidation import FactExtractor, OfflineExtractor
    from carrier.memory.embeddings.registry import create_embedder
    from carrier.memory.llm_memory import LLMContradictionJudge, LLMFactExtractor
    from carrier.memory.maintenance import open_previous_embedder, record_embedder
    from carrier.memory.vectors.registry import create_vector_index
    from carrier.persona.service import load_persona

    agent_id = settings.agent.id
    options = settings.memory
    embedder = await asyncio.to_thread(create_embedder, settings.embeddings)
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        index = create_vector_index(settings, store)
        await record_embedder(store, agent_id, embedder.model, settings.embeddings)
        previous = await open_previous_embedder(store, agent_id, embedder.model)
        if llm is None and settings.llm.providers:
            llm = build_llm(settings, store, Metrics())
            closers.append(llm.aclose)
        extractor: FactExtractor = OfflineExtractor()
        judge = None
        if llm is not None:
            bot_name = (await load_persona(store, agent_id)).name or agent_id
            extractor = LLMFactExtractor(llm, bot_name=bot_name, fallback=extractor)
            judge = LLMContradictionJudge(llm, bot_name=bot_name)
    except BaseException:
        await embedder.aclose()
        for close in closers:
            await close()
        raise
    return Memory(
        store,
        embedder,
        index,
        agent_id=agent_id,
        extractor=extractor,
        similarity_threshold=options.fact_similarity_threshold,
        share_across_guilds=options.share_across_guilds,
        judge=judge,
        judge_min_similarity=options.judge_min_similarity,
        archive_results=options.archive_results,
        previous_embedder=previous,
        closers=closers,
    )
