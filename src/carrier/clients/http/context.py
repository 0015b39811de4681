"""What the routes share: the parts the app was built from, handed in by :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from carrier.engine.coalesce import ReadCoalescer
from carrier.engine.pipeline import Engine
from carrier.memory.api import Memory
from carrier.metrics import Metrics
from carrier.settings import Settings
from carrier.store.store import Store

if TYPE_CHECKING:
    from carrier.clients.http.hub import ChannelHub


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
    key_checks: ReadCoalescer = field(init=False, default_factory=ReadCoalescer)
    """Concurrent checks of one key share a query (never one that began before they asked:
    a key revoked a moment ago is still refused at once)."""

    @property
    def agent_id(self) -> str:
        return self.engine.agent_id


def context_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.carrier
    return ctx
