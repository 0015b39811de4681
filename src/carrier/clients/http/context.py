"""What the routes share: the parts the app was built from, handed in by :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from carrier.engine.pipeline import Engine
from carrier.memory.api import Memory
from carrier.metrics import Metrics
from carrier.settings import Settings
from carrier.store.store import Store

if TYPE_CHECKING:
    from carrier.clients.http.hub import ChannelHub
    from carrier.clients.http.keys import KeyChecker


@dataclass(slots=True)
class ApiContext:
    settings: Settings
    store: Store
    engine: Engine
    memory: Memory | None
    metrics: Metrics
    ws_auth_timeout_seconds: float = 10.0
    """How long a WebSocket may take to send its auth frame."""
    hub: ChannelHub = field(init=False)
    keys: KeyChecker = field(init=False)
    """Presented API keys, checked against the database at most ``api.key_cache_seconds``
    ago."""

    @property
    def agent_id(self) -> str:
        return self.engine.agent_id


def context_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.carrier
    return ctx


async def request_context(request: Request) -> ApiContext:
    """:func:`context_of` as a route dependency.  async: FastAPI runs a plain function
    dependency in its thread pool, a thread hop on every request."""
    return context_of(request)
