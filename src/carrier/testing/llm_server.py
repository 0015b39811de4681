"""A scripted LLM server over real HTTP on 127.0.0.1, for tests and benchmarks.

It speaks enough of three APIs for the official SDKs to talk to it unmodified:

* OpenAI-compatible ``POST /v1/chat/completions`` (whole answers and SSE streaming, with
  ``stream_options.include_usage``), and ``POST /v1/embeddings`` (deterministic vectors,
  ``float`` or ``base64``);
* Anthropic ``POST /v1/messages`` (whole answers and SSE streaming).

Usage::

    from carrier.testing import llm_server as fake

    async with fake.ScriptedLLMServer(fake.answer("Blub!")) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x")
        anthropic_client = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url,
                                                    api_key="x")
        ...
        server.script(fake.rate_limit(retry_after=30), fake.stream("Hello there", chunks=3))
        ...
        assert server.requests[-1].system.startswith("You are")

API:

``ScriptedLLMServer(*behaviours, default=answer("Blub."), host="127.0.0.1", port=0,
strict=True, remember=True)``
    Behaviours are consumed in order, one per chat request (either API; embeddings never
    consume one); when the script is empty, ``default`` answers: a behaviour, or a callable
    ``(RecordedRequest) -> Behaviour`` (e.g. to echo).  ``port=0`` picks a free port.
    ``strict`` rejects requests the real APIs reject (HTTP 400): no messages, an Anthropic
    conversation that does not start with a user turn or does not alternate, a missing
    ``max_tokens`` for Anthropic, sampling parameters (``temperature``, ``top_p``,
    ``top_k``) under ``anthropic-version: 2026-10-21`` or later.  ``remember=False``
    (benchmarks) keeps no requests: ``requests`` and ``served`` stay empty, ``answered``
    counts.
``async with server`` / ``await server.start()`` / ``await server.stop()``
    Starts and stops it; stopping ends stalls and delays at once.
``server.url``, ``server.openai_base_url`` (``…/v1``), ``server.anthropic_base_url``
``server.script(*behaviours)``
    Appends to the script; ``server.pending`` is how many are left.
``server.requests``
    Every request received, oldest first, as :class:`RecordedRequest` (``api``, ``path``,
    ``headers``, ``body``, ``model``, ``stream``, ``system``, ``messages``, ``received_at``).
``await server.wait_for_requests(count, within=5.0)``
    Waits until ``count`` requests arrived (e.g. to act while one is stalled).
``server.active`` / ``server.peak_active``
    Requests being handled now / at most at once (to see that nothing serialises).
``server.served``
    ``(RecordedRequest, seconds)`` per chat request answered: the server's own time from
    receiving the request to handing back its response, delays included (benchmarks take it
    as the provider's time).

Behaviours (functions returning a :class:`Behaviour`):

=================================  ==========================================================
``answer(text, delay=0)``          a whole answer after ``delay`` seconds; streamed as one
                                   chunk when the client asked for a stream
``stream(text, chunks=3,           the answer in ``chunks`` pieces, ``delay`` seconds before
delay=0)``                         each (a non-streaming request gets it whole at the end)
``stall(seconds=3600)``            nothing for ``seconds`` (then a normal answer), so the
                                   client's timeout fires
``rate_limit(retry_after=1.0)``    HTTP 429 with ``Retry-After`` (``None``: without)
``error(status=500)``              that HTTP status with the API's error body (529 is
                                   Anthropic's "overloaded")
``malformed_json()``               HTTP 200 whose JSON body is cut off (streaming: an SSE
                                   event whose JSON is cut off)
``wrong_shape()``                  HTTP 200 with valid JSON of the wrong shape: the answer's
                                   text is a number and a token count a string (for requests
                                   that do not stream)
``cut_stream_midway(text)``        half the answer, then the connection is dropped (a
                                   streaming request gets half its SSE events)
``quota_exhausted()``              OpenAI: 429 ``insufficient_quota``; Anthropic: 402
                                   ``billing_error``
=================================  ==========================================================

Answers carry usage (``~4 characters per token`` estimates).  Speed: a zero-delay answer is
a few hundred microseconds of server time, and delays are ``asyncio`` sleeps, so hundreds of
slow answers run side by side (no per-request thread, no serialisation; the access log is
off).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import random
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import orjson
from aiohttp import web

from carrier.testing.loopback import LoopbackServer

BehaviourKind = Literal[
    "answer",
    "stream",
    "stall",
    "rate_limit",
    "error",
    "malformed_json",
    "wrong_shape",
    "cut_stream_midway",
    "quota_exhausted",
]
Api = Literal["openai", "anthropic", "embeddings"]


def _loads(raw: bytes) -> Any:
    """A request body: orjson, which reads the long transcripts of a load test at a fraction
    of json's cost; json for what orjson refuses that JSON allows (escaped lone surrogates)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _dumps(body: Any) -> str:
    return orjson.dumps(body).decode()


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the server answers one request.  Build with the functions below."""

    kind: BehaviourKind
    text: str = ""
    delay: float = 0.0
    chunks: int = 1
    retry_after: float | None = None
    status: int = 200


def answer(text: str = "Blub.", delay: float = 0.0) -> Behaviour:
    return Behaviour("answer", text=text, delay=delay)


def stream(text: str, chunks: int = 3, delay: float = 0.0) -> Behaviour:
    return Behaviour("stream", text=text, delay=delay, chunks=max(1, chunks))


def stall(seconds: float = 3600.0, text: str = "Sorry, I dozed off.") -> Behaviour:
    return Behaviour("stall", text=text, delay=seconds)


def rate_limit(retry_after: float | None = 1.0) -> Behaviour:
    return Behaviour("rate_limit", retry_after=retry_after, status=429)


def error(status: int = 500) -> Behaviour:
    return Behaviour("error", status=status)


def malformed_json() -> Behaviour:
    return Behaviour("malformed_json")


def wrong_shape() -> Behaviour:
    return Behaviour("wrong_shape")


def cut_stream_midway(text: str = "This answer will never be finished, because") -> Behaviour:
    return Behaviour("cut_stream_midway", text=text, chunks=4)


def quota_exhausted() -> Behaviour:
    return Behaviour("quota_exhausted")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it."""

    api: Api
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def system(self) -> str:
        """The system prompt (OpenAI: the ``system``/``developer`` messages joined)."""
        if self.api == "anthropic":
            system = self.body.get("system", "")
            if isinstance(system, list):
                return "".join(b.get("text", "") for b in system if isinstance(b, dict))
            return str(system)
        return "\n".join(
            _content_text(m.get("content"))
            for m in self.body.get("messages", [])
            if m.get("role") in ("system", "developer")
        )

    @property
    def conversation_chars(self) -> int:
        """How long the text of :attr:`messages` is, without building them."""
        return sum(
            len(_content_text(m.get("content")))
            for m in self.body.get("messages", [])
            if m.get("role") not in ("system", "developer")
        )

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation without the system part: ``[{"role", "content"}]``."""
        return [
            {"role": str(m.get("role")), "content": _content_text(m.get("content"))}
            for m in self.body.get("messages", [])
            if m.get("role") not in ("system", "developer")
        ]


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _tokens(text: str) -> int:
    return _tokens_of(len(text))


def _tokens_of(chars: int) -> int:
    return max(1, math.ceil(chars / 4)) if chars else 0


def _split(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` pieces that join back to it exactly."""
    if parts <= 1 or len(text) < 2:
        return [text]
    parts = min(parts, len(text))
    size = math.ceil(len(text) / parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _embedding(text: str, dimensions: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class ScriptedLLMServer(LoopbackServer):
    """See the module docstring."""

    def __init__(
        self,
        *behaviours: Behaviour,
        default: Behaviour | Callable[[RecordedRequest], Behaviour] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = True,
        embedding_dimensions: int = 16,
        remember: bool = True,
    ) -> None:
        # A large listen queue: tests open hundreds of connections at once.
        super().__init__(host=host, port=port, description="the scripted LLM server", backlog=1024)
        self._script: deque[Behaviour] = deque(behaviours)
        self.default: Behaviour | Callable[[RecordedRequest], Behaviour] = default or answer()
        self.strict = strict
        self.embedding_dimensions = embedding_dimensions
        self.remember = remember
        self.answered = 0
        self.requests: list[RecordedRequest] = []
        self._arrival = asyncio.Event()
        self.active = 0
        self.peak_active = 0
        self.served: list[tuple[RecordedRequest, float]] = []
        self._closing = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/embeddings", self._embeddings)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        return app

    async def start(self) -> Self:
        self._closing = asyncio.Event()
        return await super().start()

    async def stop(self) -> None:
        """Stop serving; stalls and delays in progress end at once."""
        self._closing.set()
        await super().stop()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def script(self, *behaviours: Behaviour) -> None:
        self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        return len(self._script)

    async def wait_for_requests(self, count: int, within: float = 5.0) -> None:
        """Wait until at least ``count`` requests arrived (``TimeoutError`` after
        ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                await self._arrival.wait()

    # -- handlers ----------------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        began = time.perf_counter()
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        recorded: RecordedRequest | None = None
        try:
            try:
                body = _loads(await request.read())
            except ValueError:  # not JSON, or not UTF-8
                return self._error_response(api, 400, "the request body is not JSON")
            if not isinstance(body, dict):
                return self._error_response(api, 400, "the request body must be an object")
            recorded = RecordedRequest(api, request.path, dict(request.headers), body)
            self._record(recorded)
            problem = self._invalid(recorded) if self.strict else None
            if problem:
                return self._error_response(api, 400, problem)
            behaviour = self._next(recorded)
            return await self._perform(request, recorded, behaviour)
        finally:
            self.active -= 1
            if recorded is not None:
                self.answered += 1
                if self.remember:
                    self.served.append((recorded, time.perf_counter() - began))

    def _record(self, recorded: RecordedRequest) -> None:
        if self.remember:
            self.requests.append(recorded)
        # Wake every waiter; the next arrival gets a fresh event.
        arrival, self._arrival = self._arrival, asyncio.Event()
        arrival.set()

    def _next(self, recorded: RecordedRequest) -> Behaviour:
        if self._script:
            return self._script.popleft()
        if callable(self.default):
            return self.default(recorded)
        return self.default

    def _invalid(self, recorded: RecordedRequest) -> str | None:
        messages = recorded.body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        if not recorded.model:
            return "model: required"
        if recorded.api == "anthropic":
            if not isinstance(recorded.body.get("max_tokens"), int):
                return "max_tokens: Field required"
            if recorded.headers.get("anthropic-version", "") >= "2026-10-21":
                for sampling in ("temperature", "top_p", "top_k"):
                    if sampling in recorded.body:
                        return f"{sampling}: Extra inputs are not permitted"
            roles = [m.get("role") for m in messages]
            if roles[0] != "user":
                return "messages: first message must use the 'user' role"
            if any(role not in ("user", "assistant") for role in roles):
                return "messages: roles must be 'user' or 'assistant'"
            if any(a == b for a, b in itertools.pairwise(roles)):
                return "messages: roles must alternate between 'user' and 'assistant'"
        return None

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _perform(
        self, request: web.Request, recorded: RecordedRequest, behaviour: Behaviour
    ) -> web.StreamResponse:
        api = recorded.api
        kind = behaviour.kind
        if kind in ("answer", "stall"):
            await self._sleep(behaviour.delay)
            if _gone(request):
                return web.Response(status=499)  # the client gave up; nobody to answer
            return await self._answer(request, recorded, [behaviour.text], 0.0)
        if kind == "stream":
            pieces = _split(behaviour.text, behaviour.chunks)
            if not recorded.stream:
                await self._sleep(behaviour.delay * len(pieces))
                return await self._answer(request, recorded, [behaviour.text], 0.0)
            return await self._answer(request, recorded, pieces, behaviour.delay)
        if kind == "rate_limit":
            headers = {}
            if behaviour.retry_after is not None:
                headers["retry-after"] = f"{behaviour.retry_after:g}"
            return self._error_response(api, 429, "Rate limit reached", headers=headers)
        if kind == "quota_exhausted":
            if api == "anthropic":
                return self._error_response(
                    api, 402, "Your credit balance is too low.", error_type="billing_error"
                )
            return self._error_response(
                api,
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                error_type="insufficient_quota",
                code="insufficient_quota",
            )
        if kind == "error":
            return self._error_response(api, behaviour.status, "The server had an error.")
        if kind == "malformed_json":
            if recorded.stream:
                response = await self._start_sse(request)
                if api == "anthropic":
                    await response.write(b'event: message_start\ndata: {"type": "message_st\n\n')
                else:
                    await response.write(b'data: {"id": "broken", "choices": [{"index": 0\n\n')
                    await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
                return response
            return web.Response(
                status=200,
                text='{"id": "broken", "choices": [{"index": 0, "message": {"role": "assi',
                content_type="application/json",
            )
        if kind == "wrong_shape":
            if api == "anthropic":
                body: dict[str, Any] = {
                    "id": "msg_wrong",
                    "type": "message",
                    "role": "assistant",
                    "model": recorded.model,
                    "content": [{"type": "text", "text": 42}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": "many", "output_tokens": 1},
                }
            else:
                body = {
                    "id": "chatcmpl-wrong",
                    "object": "chat.completion",
                    "model": recorded.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": 42}}],
                    "usage": {"prompt_tokens": "many", "completion_tokens": 1},
                }
            return web.json_response(body)
        if kind == "cut_stream_midway":
            return await self._cut(request, recorded, behaviour)
        raise AssertionError(f"unknown behaviour {kind}")

    # -- answers -----------------------------------------------------------------------------

    async def _answer(
        self, request: web.Request, recorded: RecordedRequest, pieces: list[str], delay: float
    ) -> web.StreamResponse:
        text = "".join(pieces)
        if not recorded.stream:
            return web.json_response(self._whole_body(recorded, text), dumps=_dumps)
        response = await self._start_sse(request)
        for event in self._stream_events(recorded, pieces, delay):
            if isinstance(event, float):
                await self._sleep(event)
                if _gone(request):
                    return response
            else:
                await response.write(event)
        await response.write_eof()
        return response

    def _usage(self, recorded: RecordedRequest, text: str) -> tuple[int, int]:
        # Counted from the lengths (a whole transcript per request under a benchmark's load).
        return _tokens_of(len(recorded.system) + recorded.conversation_chars), _tokens(text)

    def _whole_body(self, recorded: RecordedRequest, text: str) -> dict[str, Any]:
        input_tokens, output_tokens = self._usage(recorded, text)
        if recorded.api == "anthropic":
            return {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": recorded.model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": recorded.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }

    async def _start_sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        return response

    def _stream_events(
        self, recorded: RecordedRequest, pieces: list[str], delay: float
    ) -> list[bytes | float]:
        """The SSE events of a whole streamed answer; a float is a pause before the next."""
        text = "".join(pieces)
        input_tokens, output_tokens = self._usage(recorded, text)
        events: list[bytes | float] = []
        if recorded.api == "anthropic":
            message_id = f"msg_{uuid.uuid4().hex[:24]}"
            events.append(
                _sse(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": message_id,
                            "type": "message",
                            "role": "assistant",
                            "model": recorded.model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                        },
                    },
                )
            )
            events.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            events.append(_sse("ping", {"type": "ping"}))
            for piece in pieces:
                if delay:
                    events.append(delay)
                events.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
            events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            events.append(
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens},
                    },
                )
            )
            events.append(_sse("message_stop", {"type": "message_stop"}))
            return events

        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            return _sse(
                None,
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": recorded.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                },
            )

        events.append(chunk({"role": "assistant", "content": ""}, None))
        for piece in pieces:
            if delay:
                events.append(delay)
            events.append(chunk({"content": piece}, None))
        events.append(chunk({}, "stop"))
        options = recorded.body.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(
                _sse(
                    None,
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": recorded.model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": input_tokens,
                            "completion_tokens": output_tokens,
                            "total_tokens": input_tokens + output_tokens,
                        },
                    },
                )
            )
        events.append(b"data: [DONE]\n\n")
        return events

    async def _cut(
        self, request: web.Request, recorded: RecordedRequest, behaviour: Behaviour
    ) -> web.StreamResponse:
        """Send about half of the answer, then drop the connection."""
        pieces = _split(behaviour.text, behaviour.chunks)
        if recorded.stream:
            response = await self._start_sse(request)
            events = [e for e in self._stream_events(recorded, pieces, 0.0) if isinstance(e, bytes)]
            for event in events[: max(1, len(events) // 2)]:
                await response.write(event)
        else:
            body = json.dumps(self._whole_body(recorded, behaviour.text)).encode()
            response = web.StreamResponse(status=200)
            response.content_type = "application/json"
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        await asyncio.sleep(0)  # let the transport flush what was written
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response

    # -- errors ------------------------------------------------------------------------------

    def _error_response(
        self,
        api: Api,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        if api == "anthropic":
            kind = error_type or {
                400: "invalid_request_error",
                401: "authentication_error",
                402: "billing_error",
                403: "permission_error",
                404: "not_found_error",
                429: "rate_limit_error",
                529: "overloaded_error",
            }.get(status, "api_error")
            body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            kind = error_type or {
                400: "invalid_request_error",
                429: "requests",
            }.get(status, "server_error")
            body = {
                "error": {
                    "message": message,
                    "type": kind,
                    "param": None,
                    "code": code or ("rate_limit_exceeded" if status == 429 else None),
                }
            }
        return web.json_response(body, status=status, headers=headers)

    # -- embeddings --------------------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error_response("embeddings", 400, "the request body is not JSON")
        self._record(RecordedRequest("embeddings", request.path, dict(request.headers), body))
        inputs = body.get("input", [])
        if isinstance(inputs, str):
            inputs = [inputs]
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = _embedding(str(text), dimensions)
            embedding: Any = vector
            if as_base64:
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_tokens(str(t)) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _gone(request: web.Request) -> bool:
    """Whether the client already closed the connection (after a timeout of its own)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _sse(event: str | None, data: dict[str, Any]) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _serve(
    text: str, delay: float, port: int, remember: bool
) -> tuple[list[tuple[RecordedRequest, float]], int, int]:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = ScriptedLLMServer(default=answer(text, delay=delay), port=port, remember=remember)
    async with server:
        print(server.url, flush=True)
        await stop.wait()
    return server.served, server.answered, server.peak_active


def main(argv: list[str] | None = None) -> None:
    """Serve one default behaviour from its own process (benchmarks load it from outside):
    ``python -m carrier.testing.llm_server --answer TEXT --delay SECONDS [--port N]
    [--timings FILE]``.  Prints its URL on the first line; on SIGTERM writes to FILE, one
    JSON line per request, the last message's text and the server's own seconds, then prints
    the request count and peak."""
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--answer", default="Blub.")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timings", default=None)
    args = parser.parse_args(argv)
    # Requests are kept only for --timings: a benchmark's hundreds per second add up.
    # uvloop, as under carrier serve: a benchmark's provider takes less of the machine.
    served, answered, peak = uvloop.run(
        _serve(args.answer, args.delay, args.port, remember=args.timings is not None)
    )
    if args.timings:
        with open(args.timings, "w", encoding="utf-8") as out:
            for recorded, seconds in served:
                last = recorded.messages[-1]["content"] if recorded.messages else ""
                out.write(json.dumps({"last": last, "seconds": seconds}) + "\n")
    print(f"requests {answered} peak_active {peak}", flush=True)


if __name__ == "__main__":
    main()
