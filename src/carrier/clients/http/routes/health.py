"""Liveness, readiness and Prometheus metrics (no key needed: load balancers and scrapers)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from carrier.clients.http.auth import Context
from carrier.clients.http.errors import ERROR_RESPONSES, ApiError
from carrier.clients.http.schemas import Health, Readiness

router = APIRouter(tags=["health"], responses={503: ERROR_RESPONSES[503]})


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="The database answers")
async def readyz(ctx: Context) -> Readiness:
    try:
        async with asyncio.timeout(5), ctx.store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ApiError(503, f"database not ready: {type(exc).__name__}") from None
    return Readiness(status="ready", database="ok")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(ctx: Context) -> Response:
    """Response times, error rate (``carrier_http_responses`` by status class), throttled
    requests per scope, active users, memory sizes, LLM usage."""
    agent = ctx.agent_id
    facts, live, archived = await asyncio.gather(
        ctx.store.facts.count(agent, include_history=False),
        ctx.store.messages.count(agent),
        ctx.store.messages.count(agent, archived=True),
    )
    size = ctx.metrics.memory_size
    size.labels(kind="facts").set(facts)
    size.labels(kind="short_term_messages").set(live)
    size.labels(kind="archived_messages").set(archived)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
