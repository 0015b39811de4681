"""Running the app under uvicorn, programmatically (``carrier serve``; ``carrier run`` when
``api.enabled``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from carrier import heap
from carrier.bootstrap import build_engine_for, open_memory, prepare_store
from carrier.clients.http.app import create_app
from carrier.clients.http.corked import CorkedHttpToolsProtocol
from carrier.clients.http.relay import RedisRelay
from carrier.engine.pipeline import Engine
from carrier.generation.responder import Generator
from carrier.memory.api import Memory
from carrier.settings import Settings
from carrier.store.store import Store

log = logging.getLogger("carrier.http")

HTTP_BOT_ID = "carrier-bot"
"""The bot's own user id in the log, as in the terminal chat."""


def uvicorn_config(
    app: FastAPI, settings: Settings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """uvicorn as the API wants it: the WebSocket frame limit from the settings, no access
    log (it would hold every path; Carrier's own logs and /metrics say what happened), each
    response in one write (:mod:`carrier.clients.http.corked`)."""
    return uvicorn.Config(
        app,
        host=host or settings.api.host,
        port=settings.api.port if port is None else port,
        http=CorkedHttpToolsProtocol,
        ws="websockets-sansio",
        ws_max_size=settings.api.max_ws_message_bytes,
        ws_per_message_deflate=False,
        # A busy peer (or a busy server) may take a while to answer a ping; a dead one is
        # still found within a minute and a half.
        ws_ping_interval=30,
        ws_ping_timeout=60,
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )


class ApiServer(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM only ask it to stop: uvicorn would raise
    the signal again once it stopped, killing the process before the engine has logged its
    last replies and the store is closed.  With ``handle_signals=False`` it installs no
    handlers at all (when it runs beside another client that owns them: stop it by setting
    ``should_exit``)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool = True) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class ApiParts:
    store: Store
    engine: Engine
    memory: Memory | None


@contextlib.asynccontextmanager
async def open_api_parts(
    settings: Settings,
    *,
    store: Store | None = None,
    engine: Engine | None = None,
    memory: Memory | None = None,
    llm: Generator | None = None,
    with_memory: bool = True,
) -> AsyncIterator[ApiParts]:
    """The store, memory and engine the app serves (those handed in are used as they are and
    left open; those built here are closed on exit)."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await prepare_store(settings)
            stack.push_async_callback(store.close)
        if memory is None and with_memory and engine is None:
            try:
                memory = await open_memory(settings, store)
            except Exception as exc:  # the API still serves chat without long-term memory
                log.warning("long-term memory unavailable, serving without it: %s", exc)
            else:
                stack.push_async_callback(memory.aclose)
        if engine is None:
            engine = build_engine_for(settings, store, HTTP_BOT_ID, llm=llm, memory=memory)
            stack.push_async_callback(engine.aclose)
        yield ApiParts(store, engine, memory)


@contextlib.asynccontextmanager
async def open_relay(settings: Settings) -> AsyncIterator[RedisRelay | None]:
    """With ``redis_url``, the relay that carries WebSocket broadcasts between the processes
    serving the agent (workers, or instances behind a load balancer); else None."""
    if settings.redis_url is None:
        yield None
        return
    async with RedisRelay(settings.redis_url.get_secret_value(), settings.agent.id) as relay:
        yield relay


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel spreads
    new connections over the workers of ``carrier serve --workers``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def serve(
    settings: Settings,
    *,
    store: Store | None = None,
    engine: Engine | None = None,
    memory: Memory | None = None,
    llm: Generator | None = None,
    host: str | None = None,
    port: int | None = None,
    with_memory: bool = True,
    handle_signals: bool = True,
    reuse_port: bool = False,
) -> None:
    """Serve the API until interrupted (SIGINT/SIGTERM stop it gracefully).

    Parts not handed in are built from ``settings`` (and closed on exit).  Beside another
    client in one process (``carrier run``), hand in its store, engine and memory, pass
    ``handle_signals=False`` and cancel the task to stop it.  ``reuse_port``: listen with
    SO_REUSEPORT, beside the other workers of ``carrier serve --workers``."""
    async with (
        open_api_parts(
            settings, store=store, engine=engine, memory=memory, llm=llm, with_memory=with_memory
        ) as parts,
        open_relay(settings) as relay,
    ):
        app = create_app(settings, parts.store, parts.engine, parts.memory, relay=relay)
        server = ApiServer(
            uvicorn_config(app, settings, host=host, port=port), handle_signals=handle_signals
        )
        sockets = (
            [reuse_port_socket(server.config.host, server.config.port)] if reuse_port else None
        )
        log.info("serving the API on http://%s:%s", server.config.host, server.config.port)
        heap.settle()
        serving = asyncio.create_task(server.serve(sockets=sockets))
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            # Cancelled by the caller: stop as on SIGTERM (close the listening socket, let
            # requests in flight finish), then let the cancellation through.
            server.should_exit = True
            await serving
            raise
