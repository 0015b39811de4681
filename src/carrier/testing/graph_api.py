"""A local stand-in for the Instagram Graph API's content publishing, over real HTTP on
127.0.0.1, scriptable for the failures that matter (needs the ``test`` extra: aiohttp).

It implements, under ``/{version}/``:

* ``POST /{ig-user-id}/media`` (``image_url``, or ``media_type=REELS`` + ``video_url``;
  ``caption``) -> ``{"id": container}``.  With ``fetch_media`` on (the default) it downloads
  the URL like Instagram does, and a URL that does not answer 200 leaves the container in
  ``ERROR``;
* ``GET /{container-id}?fields=status_code,status``;
* ``POST /{ig-user-id}/media_publish`` (``creation_id``) -> ``{"id": media}``; a container
  can be published once;
* ``GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config``;
* ``GET /{ig-user-id}/media?fields=id,caption,timestamp`` (newest first).

Every request needs ``Authorization: Bearer <token>`` (or ``access_token``); errors use the
Graph API's error object.  Usage::

    async with FakeGraphAPI(access_token="tok") as graph:
        client = GraphClient(graph.account_id, SecretStr("tok"), base_url=graph.url)
        graph.lose_publish_response("drop")     # publish happens, the answer is lost
        graph.after_next_publish(lambda c: graph.rate_limit(endpoint="status"))
        graph.rate_limit(times=1)               # the next call: code 4
        graph.expire_token()                    # every call: code 190, subcode 463
        graph.fail_next_container("2207026: unsupported video format")
        graph.slow_processing(polls=3)          # IN_PROGRESS for 3 polls, then FINISHED
        graph.other_apps_usage = 20             # quota_usage counts posts made elsewhere
        graph.quota_total = 25                  # config.quota_total, enforced on publish

``clock`` (default: now, UTC) dates the media and the 24-hour window, so a test can move
time forward together with the client's clock.
        assert len(graph.published) == 1
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from carrier.testing.loopback import LoopbackServer

LostResponse = Literal["drop", "500"]
_FETCH_FAILED = "2207052: The media could not be fetched from the URI"
Endpoint = Literal["media", "status", "publish", "limit", "list", "any"]


@dataclass(slots=True)
class Container:
    id: str
    kind: Literal["image", "video"]
    media_url: str
    caption: str
    status_code: str = "IN_PROGRESS"
    status: str = ""
    polls_left: int = 0
    fetched_bytes: int | None = None
    fetched_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    id: str
    container_id: str
    caption: str
    media_url: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class GraphRequest:
    method: str
    path: str
    endpoint: Endpoint
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]


@dataclass(slots=True)
class _RateLimit:
    times: int
    endpoint: Endpoint
    code: int
    http_status: int
    retry_after: float | None


@dataclass(slots=True)
class _Script:
    token_expired: bool = False
    rate_limits: list[_RateLimit] = field(default_factory=list)
    container_errors: list[str] = field(default_factory=list)
    processing_polls: int = 0
    lost_publishes: list[LostResponse] = field(default_factory=list)
    expire_containers: int = 0
    after_publish: list[Callable[[Container], None]] = field(default_factory=list)


class FakeGraphAPI(LoopbackServer):
    """The stand-in server.  ``port=0`` picks a free port; ``url`` is the base URL to give
    the client (the API version is part of every path)."""

    def __init__(
        self,
        *,
        account_id: str = "17841400000000001",
        access_token: str = "test-access-token",
        api_version: str = "v25.0",
        quota_total: int = 50,
        fetch_media: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, description="the Graph API stand-in")
        self.account_id = account_id
        self.clock = clock or (lambda: datetime.now(UTC))
        self.access_token = access_token
        self.api_version = api_version
        self.quota_total = quota_total
        self.other_apps_usage = 0
        self.fetch_media = fetch_media
        self.containers: dict[str, Container] = {}
        self.published: list[Media] = []
        self.requests: list[GraphRequest] = []
        self.publish_calls = 0
        self._script = _Script()
        self._ids = itertools.count(17_900_000_000_000_001)
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{version}/{node}", self._node)
        app.router.add_route("*", "/{version}/{node}/{edge}", self._edge)
        return app

    # -- scripting -------------------------------------------------------------------------

    def expire_token(self, expired: bool = True) -> None:
        """Every request from now on fails with OAuthException code 190 / subcode 463."""
        self._script.token_expired = expired

    def rate_limit(
        self,
        times: int = 1,
        *,
        endpoint: Endpoint = "any",
        code: int = 4,
        http_status: int = 400,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` requests (to ``endpoint``) are rate limited: Graph error
        ``code`` (4, 17, 32, 613; or 9 for the publishing limit) with ``http_status`` (429
        sends ``Retry-After`` when given)."""
        self._script.rate_limits.append(_RateLimit(times, endpoint, code, http_status, retry_after))

    def fail_next_container(
        self, status: str = "2207026: The video format is not supported"
    ) -> None:
        """The next container created ends in ``ERROR`` with this ``status``."""
        self._script.container_errors.append(status)

    def slow_processing(self, polls: int) -> None:
        """Containers created from now on stay ``IN_PROGRESS`` for ``polls`` status checks."""
        self._script.processing_polls = polls

    def expire_next_container(self) -> None:
        """The next container created is ``EXPIRED`` at its first status check."""
        self._script.expire_containers += 1

    def lose_publish_response(self, mode: LostResponse = "drop", times: int = 1) -> None:
        """The next ``times`` publish calls publish, then lose the answer: the connection is
        dropped (``drop``) or an HTTP 500 error is sent (``500``)."""
        self._script.lost_publishes.extend([mode] * times)

    def after_next_publish(self, action: Callable[[Container], None]) -> None:
        """Run ``action(container)`` right after the next publish, before its answer is sent
        (e.g. to refuse the status check that follows, or to let the container expire)."""
        self._script.after_publish.append(action)

    def requests_to(self, endpoint: Endpoint) -> list[GraphRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def usage(self, now: datetime | None = None) -> int:
        since = (now or self.clock()) - timedelta(days=1)
        return self.other_apps_usage + sum(1 for m in self.published if m.timestamp >= since)

    # -- routing ---------------------------------------------------------------------------

    async def _node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        if request.method == "GET" and node in self.containers:
            return await self._guarded(request, "status", self._status)
        return await self._guarded(request, "any", self._unsupported)

    async def _edge(self, request: web.Request) -> web.StreamResponse:
        node, edge = request.match_info["node"], request.match_info["edge"]
        if node != self.account_id:
            return await self._guarded(request, "any", self._unsupported)
        routes: dict[tuple[str, str], tuple[Endpoint, Any]] = {
            ("POST", "media"): ("media", self._create),
            ("GET", "media"): ("list", self._list),
            ("POST", "media_publish"): ("publish", self._publish),
            ("GET", "content_publishing_limit"): ("limit", self._limit),
        }
        endpoint, handler = routes.get((request.method, edge), ("any", self._unsupported))
        return await self._guarded(request, endpoint, handler)

    async def _guarded(
        self, request: web.Request, endpoint: Endpoint, handler: Any
    ) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        query = dict(request.query)
        self.requests.append(
            GraphRequest(request.method, request.path, endpoint, query, form, dict(request.headers))
        )
        if request.match_info["version"] != self.api_version:
            return _error(400, 2635, "Unsupported API version", "OAuthException")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = token or form.get("access_token") or query.get("access_token", "")
        if self._script.token_expired:
            return _error(
                400,
                190,
                "Error validating access token: Session has expired.",
                "OAuthException",
                subcode=463,
            )
        if token != self.access_token:
            return _error(400, 190, "Invalid OAuth access token.", "OAuthException")
        limited = self._take_rate_limit(endpoint)
        if limited is not None:
            headers = {}
            if limited.retry_after is not None:
                headers["Retry-After"] = f"{limited.retry_after:g}"
            if limited.code == 9:
                return _error(
                    limited.http_status,
                    9,
                    "Application request limit reached",
                    "OAuthException",
                    subcode=2207042,
                    user_msg="You reached maximum number of posts that is allowed to be "
                    "published by Content Publishing API.",
                    headers=headers,
                )
            return _error(
                limited.http_status,
                limited.code,
                "Application request limit reached",
                "OAuthException",
                transient=True,
                headers=headers,
            )
        async with self._lock:
            response: web.StreamResponse = await handler(request, form, query)
            return response

    def _take_rate_limit(self, endpoint: Endpoint) -> _RateLimit | None:
        for limit in self._script.rate_limits:
            if limit.times > 0 and limit.endpoint in ("any", endpoint):
                limit.times -= 1
                return limit
        return None

    # -- endpoints -------------------------------------------------------------------------

    async def _unsupported(
        self, request: web.Request, _form: dict[str, str], _query: dict[str, str]
    ) -> web.Response:
        return _error(
            400,
            100,
            f"Unsupported {request.method.lower()} request. Object does not exist or does not "
            "support this operation",
            "GraphMethodException",
            subcode=33,
        )

    async def _create(
        self, _request: web.Request, form: dict[str, str], _query: dict[str, str]
    ) -> web.Response:
        if form.get("media_type") == "REELS":
            kind: Literal["image", "video"] = "video"
            url = form.get("video_url", "")
        elif "media_type" in form:
            return _error(400, 100, "The media type entered is not supported", "OAuthException")
        else:
            kind, url = "image", form.get("image_url", "")
        if not url:
            return _error(
                400, 100, "The parameter image_url or video_url is required", "OAuthException"
            )
        container = Container(
            id=str(next(self._ids)),
            kind=kind,
            media_url=url,
            caption=form.get("caption", ""),
            polls_left=self._script.processing_polls,
        )
        if self.fetch_media:
            problem = await self._fetch(container)
            if problem:
                container.status_code, container.status = "ERROR", problem
        if container.status_code != "ERROR" and self._script.container_errors:
            container.status_code = "ERROR"
            container.status = self._script.container_errors.pop(0)
        if container.status_code != "ERROR" and self._script.expire_containers:
            self._script.expire_containers -= 1
            container.status_code, container.polls_left = "EXPIRED", 0
        self.containers[container.id] = container
        return web.json_response({"id": container.id})

    async def _fetch(self, container: Container) -> str:
        try:
            async with (
                ClientSession(timeout=ClientTimeout(total=10)) as session,
                session.get(container.media_url) as response,
            ):
                if response.status != 200:
                    return f"{_FETCH_FAILED} (HTTP {response.status})"
                body = await response.read()
        except (ClientError, TimeoutError, ValueError) as exc:
            return f"{_FETCH_FAILED} ({type(exc).__name__})"
        container.fetched_bytes = len(body)
        container.fetched_sha256 = hashlib.sha256(body).hexdigest()
        return ""

    async def _status(
        self, request: web.Request, _form: dict[str, str], _query: dict[str, str]
    ) -> web.Response:
        container = self.containers[request.match_info["node"]]
        if container.status_code == "IN_PROGRESS":
            if container.polls_left > 0:
                container.polls_left -= 1
            else:
                container.status_code, container.status = (
                    "FINISHED",
                    "Finished: Media has been uploaded and it is ready to be published.",
                )
        answer = {"id": container.id, "status_code": container.status_code}
        if container.status:
            answer["status"] = container.status
        return web.json_response(answer)

    async def _publish(
        self, request: web.Request, form: dict[str, str], _query: dict[str, str]
    ) -> web.StreamResponse:
        self.publish_calls += 1
        container = self.containers.get(form.get("creation_id", ""))
        if container is None:
            return _error(400, 100, "Invalid parameter: creation_id", "OAuthException")
        if container.status_code == "PUBLISHED":
            return _error(
                400, 9007, "The media has already been published", "OAuthException", subcode=2207006
            )
        if container.status_code == "EXPIRED":
            return _error(
                400,
                -2,
                "The media you are trying to access has expired.",
                "OAuthException",
                subcode=2207020,
            )
        if container.status_code != "FINISHED":
            return _error(400, 9007, "Media ID is not available", "OAuthException", subcode=2207027)
        if self.usage() >= self.quota_total:
            return _error(
                400,
                9,
                "Application request limit reached",
                "OAuthException",
                subcode=2207042,
                user_msg="You reached maximum number of posts that is allowed to be published "
                "by Content Publishing API.",
            )
        media = Media(
            id=str(next(self._ids)),
            container_id=container.id,
            caption=container.caption,
            media_url=container.media_url,
            timestamp=self.clock(),
        )
        container.status_code, container.status = (
            "PUBLISHED",
            "Published: Media has been published.",
        )
        self.published.append(media)
        if self._script.after_publish:
            self._script.after_publish.pop(0)(container)
        if self._script.lost_publishes:
            mode = self._script.lost_publishes.pop(0)
            if mode == "500":
                return _error(
                    500,
                    2,
                    "An unexpected error has occurred. Please retry your request later.",
                    "OAuthException",
                    transient=True,
                )
            response = web.StreamResponse(status=200)
            response.content_type = "application/json"
            await response.prepare(request)
            await asyncio.sleep(0)
            if request.transport is not None:
                request.transport.abort()
            return response
        return web.json_response({"id": media.id})

    async def _limit(
        self, _request: web.Request, _form: dict[str, str], _query: dict[str, str]
    ) -> web.Response:
        return web.json_response(
            {
                "data": [
                    {
                        "quota_usage": self.usage(),
                        "config": {"quota_total": self.quota_total, "quota_duration": 86400},
                    }
                ]
            }
        )

    async def _list(
        self, _request: web.Request, _form: dict[str, str], query: dict[str, str]
    ) -> web.Response:
        limit = int(query.get("limit", "25"))
        newest = list(reversed(self.published))[:limit]
        return web.json_response(
            {
                "data": [
                    {
                        "id": m.id,
                        "caption": m.caption,
                        "timestamp": m.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                    }
                    for m in newest
                ]
            }
        )


def _error(
    status: int,
    code: int,
    message: str,
    error_type: str,
    *,
    subcode: int | None = None,
    transient: bool = False,
    user_msg: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "code": code,
        "is_transient": transient,
        "fbtrace_id": "AFakeTraceId",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    return web.json_response({"error": error}, status=status, headers=headers)
