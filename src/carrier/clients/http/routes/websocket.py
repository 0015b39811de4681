"""WebSocket chat, one socket per channel: ``/api/v1/agents/{agent_id}/channels/{channel_id}/ws``.

Protocol (JSON text frames):

1. Authenticate: send ``Authorization: Bearer <key>`` with the handshake, or (browsers cannot
   set headers) make the first frame ``{"type": "auth", "key": "<key>"}``.  The key needs the
   ``chat`` scope.  The server answers ``{"type": "ready", "agent_id", "channel_id"}``.
2. Say something: ``{"type": "message", "request_id"?: "...", <the fields of ChatMessage>}``.
   The sender gets ``{"type": "outcome", "request_id", <ChatResult>}`` (decision, reply,
   context); every listener of the channel (the sender too) gets ``{"type": "message", ...}``
   and, when the bot answers, ``{"type": "reply", ...}`` -- also for messages sent over REST.
3. A bad frame gets ``{"type": "error", "error": {<the error shape>}}`` and the socket stays
   open.  Close codes: 4401 no/unknown/expired/revoked key, 4403 missing scope, 4404 unknown
   agent, 4408 no auth frame in time, 1009 frame larger than ``api.max_ws_message_bytes``,
   1013 the client read too slowly and fell behind, 1011 an unexpected server error (after an
   error frame with status 500; the error is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from carrier.clients.http.auth import authenticate, check_agent
from carrier.clients.http.chatting import say
from carrier.clients.http.context import ApiContext
from carrier.clients.http.errors import ApiError, error_body
from carrier.clients.http.hub import CLOSE_TOO_SLOW, Listener
from carrier.clients.http.schemas import ID_PATTERN, ChatMessage
from carrier.store.database import DatabaseError

log = logging.getLogger("carrier.http.ws")
router = APIRouter()

CLOSE_INTERNAL_ERROR = 1011
_FLUSH_SECONDS = 1.0


@router.websocket("/api/v1/agents/{agent_id}/channels/{channel_id}/ws")
async def channel_socket(websocket: WebSocket, agent_id: str, channel_id: str) -> None:
    ctx: ApiContext = websocket.app.state.carrier
    await websocket.accept()
    if not re.fullmatch(ID_PATTERN, channel_id):
        await websocket.close(4404, "bad channel id")
        return
    try:
        presented = (
            _bearer(websocket) or await _auth_frame(websocket, ctx.ws_auth_timeout_seconds) or ""
        )
        await authenticate(ctx, presented, "chat")
        check_agent(ctx, agent_id)
    except ApiError as exc:
        await websocket.close(4000 + exc.status, exc.message[:120])
        return
    except TimeoutError:
        await websocket.close(4408, "send an auth frame first")
        return
    except WebSocketDisconnect:
        return

    listener = Listener(websocket.send_text, ctx.hub.outbox_size)
    listener.start()
    ctx.hub.join(channel_id, listener)
    ctx.metrics.websockets.inc()
    receiving = asyncio.create_task(_receive(ctx, websocket, channel_id, presented, listener))
    gone = asyncio.create_task(listener.gone.wait())
    try:
        listener.offer({"type": "ready", "agent_id": ctx.agent_id, "channel_id": channel_id})
        await asyncio.wait({receiving, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ctx.hub.leave(channel_id, listener)
        ctx.metrics.websockets.dec()
        for task in (receiving, gone):
            task.cancel()
        for result in await asyncio.gather(receiving, gone, return_exceptions=True):
            if isinstance(result, Exception):  # a bug outside a frame's handling
                log.error("WebSocket of channel %s failed", channel_id, exc_info=result)
        await listener.stop()
    if listener.too_slow:
        # Its socket does not drain, so the close frame may never get out: do not wait on it.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await websocket.close(CLOSE_TOO_SLOW, "too slow: fell behind")


async def _receive(
    ctx: ApiContext, websocket: WebSocket, channel_id: str, presented: str, listener: Listener
) -> None:
    while True:
        try:
            raw = await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return
        try:
            await _handle_frame(ctx, channel_id, presented, raw, listener)
        except ApiError as exc:  # the key was revoked or expired while the socket was open
            await websocket.close(4000 + exc.status, exc.message[:120])
            return
        except Exception as exc:
            # Not swallowed by the caller's gather(): logged, told to the client in the one
            # error shape (without internals), then the socket is closed.
            log.exception("unexpected error on a WebSocket of channel %s", channel_id)
            request_id = exc.request_id if isinstance(exc, _Unexpected) else None
            listener.offer(_error(500, "unexpected server error; it has been logged", request_id))
            await listener.flush(_FLUSH_SECONDS)
            with contextlib.suppress(Exception):  # the peer may be gone already
                await websocket.close(CLOSE_INTERNAL_ERROR, "unexpected server error")
            return


class _Unexpected(Exception):
    """An unexpected error while answering the frame with ``request_id``."""

    def __init__(self, request_id: Any) -> None:
        super().__init__(f"unexpected error answering request {request_id!r}")
        self.request_id = request_id


def _bearer(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _auth_frame(websocket: WebSocket, timeout_seconds: float) -> str | None:
    async with asyncio.timeout(timeout_seconds):
        raw = await websocket.receive_text()
    with contextlib.suppress(ValueError):
        frame = json.loads(raw)
        if isinstance(frame, dict) and frame.get("type") == "auth":
            key = frame.get("key")
            return key if isinstance(key, str) else None
    return None


def _error(
    status: int, message: str, request_id: Any = None, details: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "type": "error",
        "request_id": request_id,
        **error_body(status, message, details=details),
    }


async def _handle_frame(
    ctx: ApiContext, channel_id: str, presented: str, raw: str, listener: Listener
) -> None:
    try:
        frame = json.loads(raw)
    except ValueError:
        listener.offer(_error(400, "the frame is not valid JSON"))
        return
    if not isinstance(frame, dict):
        listener.offer(_error(400, "a frame is a JSON object with a type"))
        return
    request_id = frame.pop("request_id", None)
    if not isinstance(request_id, str | int | None):
        request_id = None
    kind = frame.pop("type", None)
    if kind == "ping":
        listener.offer({"type": "pong", "request_id": request_id})
        return
    if kind != "message":
        listener.offer(
            _error(400, f"unknown frame type {kind!r}; expected message or ping", request_id)
        )
        return
    try:
        body = ChatMessage.model_validate(frame)
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        listener.offer(_error(422, "the message failed validation", request_id, details))
        return
    try:
        # Checked on every message: a key revoked while the socket is open stops working at once.
        await authenticate(ctx, presented, "chat")
        result = await say(ctx, channel_id, body)
    except ApiError:
        raise
    except (DatabaseError, OperationalError, InterfaceError) as exc:
        log.error("database unavailable: %s", exc)
        listener.offer(_error(503, "the database is unavailable right now", request_id))
        return
    except Exception as exc:
        raise _Unexpected(request_id) from exc
    listener.offer({"type": "outcome", "request_id": request_id, **result.model_dump(mode="json")})
