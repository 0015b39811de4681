"""The FastAPI app: REST and WebSocket chat, admin, health, metrics and the web console.

Built by :func:`create_app` from parts the caller already has (``carrier serve`` builds them
with :mod:`carrier.bootstrap`; tests hand in their own); nothing is built at import time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from carrier import __version__
from carrier.clients.http.context import ApiContext
from carrier.clients.http.errors import install_error_handlers
from carrier.clients.http.hub import OUTBOX_SIZE, ChannelHub, Relay
from carrier.clients.http.keys import KeyChecker
from carrier.clients.http.middleware import BodyLimit, RequestMetrics
from carrier.clients.http.routes import admin, chat, health, websocket
from carrier.engine.pipeline import Engine
from carrier.memory.api import Memory
from carrier.metrics import Metrics
from carrier.settings import Settings
from carrier.store.store import Store

CONSOLE_DIR = Path(__file__).parent / "console"


def create_app(
    settings: Settings,
    store: Store,
    engine: Engine,
    memory: Memory | None = None,
    *,
    metrics: Metrics | None = None,
    ws_outbox_size: int = OUTBOX_SIZE,
    ws_auth_timeout_seconds: float = 10.0,
    relay: Relay | None = None,
) -> FastAPI:
    """The app for ``engine``'s agent.  ``metrics`` defaults to the engine's registry, so
    /metrics shows the engine's figures and the API's side by side; ``ws_outbox_size`` is how
    many events a WebSocket reader may fall behind before it is dropped;
    ``ws_auth_timeout_seconds`` how long a WebSocket may take to send its auth frame;
    ``relay`` carries WebSocket broadcasts to and from other processes serving the agent
    (:class:`~carrier.clients.http.relay.RedisRelay`, started by the caller)."""
    metrics = metrics or engine.parts.metrics
    app = FastAPI(
        title="Carrier",
        version=__version__,
        description=(
            "Talk to a Carrier persona bot and administer it.  Authenticate with "
            "`Authorization: Bearer <key>` (keys from `carrier apikey create`); chat routes "
            "need the `chat` scope, admin routes the `admin` scope.  Every error has the "
            'shape `{"error": {"status", "code", "message", "details"}}`.'
        ),
    )
    ctx = ApiContext(
        settings=settings,
        store=store,
        engine=engine,
        memory=memory,
        metrics=metrics,
        ws_auth_timeout_seconds=ws_auth_timeout_seconds,
    )
    ctx.hub = ChannelHub(ws_outbox_size, relay)
    ctx.keys = KeyChecker(store.api_keys, engine.agent_id, settings.api.key_cache_seconds)
    app.state.carrier = ctx
    install_error_handlers(app)
    app.include_router(chat.agents_router)
    app.include_router(chat.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(websocket.router)
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
