"""API-key authentication and scopes.

HTTP clients send ``Authorization: Bearer <key>``.  No key (or an unknown, expired or revoked
one) is a 401; a key without the route's scope is a 403; a key of another agent is unknown
here.  Keys are checked against their stored hash (see :mod:`carrier.store.apikeys`); one
that checked out is trusted for ``api.key_cache_seconds`` (:mod:`carrier.clients.http.keys`),
so a revocation takes effect within that time and an expiry at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carrier.clients.http.context import ApiContext, context_of, request_context
from carrier.clients.http.errors import ApiError
from carrier.store.apikeys import ApiKey

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made by `carrier apikey create NAME --scope chat --scope admin`.",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_PROBLEMS = {
    "unknown": "unknown API key",
    "expired": "this API key has expired",
    "revoked": "this API key has been revoked",
}

AGENT_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
AgentId = Annotated[str, Path(pattern=AGENT_ID, description="The agent's id (settings agent.id)")]


async def authenticate(ctx: ApiContext, presented: str | None, scope: str) -> ApiKey:
    """The key's record, or :class:`ApiError` 401/403."""
    if not presented:
        raise ApiError(
            401, "an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE
        )
    verified = await ctx.keys.verify(presented)
    if verified.problem is not None or verified.key is None:
        raise ApiError(
            401, _PROBLEMS.get(verified.problem or "unknown", "unknown API key"), headers=_CHALLENGE
        )
    if scope not in verified.key.scopes:
        raise ApiError(403, f"this API key lacks the {scope!r} scope")
    return verified.key


def check_agent(ctx: ApiContext, agent_id: str) -> None:
    if agent_id != ctx.agent_id:
        raise ApiError(404, f"unknown agent {agent_id!r}")


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: a valid key with ``scope``, for the agent named in the path."""

    async def dependency(
        request: Request,
        agent_id: AgentId,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        ctx = context_of(request)
        key = await authenticate(ctx, credentials.credentials if credentials else None, scope)
        check_agent(ctx, agent_id)
        return key

    return dependency


ChatKey = Annotated[ApiKey, Depends(require("chat"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
Context = Annotated[ApiContext, Depends(request_context)]
