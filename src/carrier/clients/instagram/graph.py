"""The Instagram Graph API calls of content publishing, over httpx2.

Endpoints (Content Publishing guide and the IG User / IG Container references):

* ``POST /{ig-user-id}/media`` with ``image_url`` (image) or ``media_type=REELS`` and
  ``video_url`` (video), plus ``caption`` -> ``{"id": container id}``; containers expire
  after 24 hours;
* ``GET /{container-id}?fields=status_code,status`` -> ``IN_PROGRESS``, ``FINISHED``,
  ``ERROR`` (``status`` then carries the error subcode/message), ``EXPIRED`` or
  ``PUBLISHED``;
* ``POST /{ig-user-id}/media_publish`` with ``creation_id`` -> ``{"id": media id}``; when
  its response is lost, the container's ``status_code`` tells whether it was published;
* ``GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config`` ->
  ``{"data": [{"quota_usage": n, "config": {"quota_total": 50, "quota_duration": 86400}}]}``
  (the reference says "currently 50"; it used to be 25);
* ``GET /{ig-user-id}/media?fields=id,caption,media_type,media_product_type,timestamp`` ->
  the account's recent media, newest first.  Nothing links a media object to the container
  it was published from: the IG Container reference lists only ``id``, ``status``,
  ``status_code`` and ``copyright_check_status``, and IG Media has no container field, so
  after a lost publish answer the media id can only be found by caption, type and time.

Errors (Graph API error object ``{"error": {"code", "error_subcode", "message", ...}}``):
code 190 (OAuthException) is an expired or invalid token -> :class:`TokenExpired`; codes 4,
17, 32, 613, code 9 / subcode 2207042 (the publishing limit) and HTTP 429 ->
:class:`RateLimited`, to be retried later; HTTP 5xx, transient errors and dropped
connections -> :class:`GraphUnavailable`.  The access token is sent in the
``Authorization`` header, never in a URL, and never appears in a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2
from pydantic import SecretStr

from carrier.clients.instagram.credentials import ACCESS_TOKEN

log = logging.getLogger(__name__)

ContainerState = Literal["IN_PROGRESS", "FINISHED", "ERROR", "EXPIRED", "PUBLISHED"]
CONTAINER_STATES: tuple[ContainerState, ...] = (
    "IN_PROGRESS",
    "FINISHED",
    "ERROR",
    "EXPIRED",
    "PUBLISHED",
)
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
PUBLISH_LIMIT_CODE, PUBLISH_LIMIT_SUBCODE = 9, 2207042
SPAM_SUBCODE = 2207051  # code 4, but "restricted as spam": waiting does not help
TOKEN_CODE = 190
DEFAULT_RETRY_AFTER = 15 * 60.0

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class GraphError(Exception):
    """A Graph API call failed; ``code``/``subcode`` are the Graph API's when it sent them."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode
        self.status = status


class TokenExpired(GraphError):
    """The access token is expired, revoked or invalid: an operator has to replace it."""


class RateLimited(GraphError):
    """Too many calls or posts for now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GraphUnavailable(GraphError):
    """The API could not be reached, or failed on its side; the outcome of a write is
    unknown.  Safe to retry after checking what happened."""


class ContainerFailed(GraphError):
    """Instagram could not process the media (container ``ERROR`` or ``EXPIRED``)."""


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    state: ContainerState
    message: str = ""
    """``status`` as the API sent it (an error subcode/message when the state is ERROR)."""


@dataclass(frozen=True, slots=True)
class PublishingQuota:
    usage: int
    total: int
    duration_seconds: int


@dataclass(frozen=True, slots=True)
class PublishedMedia:
    id: str
    caption: str
    """``""`` when the media has none (the API then leaves the field out)."""
    timestamp: datetime | None
    media_type: str | None = None
    """``IMAGE``, ``VIDEO`` (reels too) or ``CAROUSEL_ALBUM``; ``None`` when not sent."""
    media_product_type: str | None = None
    """``FEED``, ``REELS``, ``STORY`` or ``AD``; ``None`` when not sent."""


class GraphClient:
    """The content-publishing calls for one Instagram account.

    ``base_url`` and ``transport`` exist so tests can point it at a local stand-in.
    """

    def __init__(
        self,
        account_id: str,
        access_token: SecretStr,
        *,
        base_url: str = "https://graph.facebook.com",
        api_version: str = "v25.0",
        timeout: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_id = account_id
        self._token = access_token
        self._client = httpx2.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/{api_version}/",
            headers={"Authorization": f"Bearer {access_token.get_secret_value()}"},
            timeout=timeout,
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- the calls -------------------------------------------------------------------------

    async def create_container(
        self,
        *,
        caption: str,
        image_url: str | None = None,
        video_url: str | None = None,
    ) -> str:
        """Create an image container, or a reels container for a video; return its id."""
        if (image_url is None) == (video_url is None):
            raise ValueError("give exactly one of image_url and video_url")
        form: dict[str, str] = {"caption": caption}
        if image_url is not None:
            form["image_url"] = image_url
        else:
            form["media_type"] = "REELS"
            form["video_url"] = video_url or ""
        body = await self._call("POST", f"{self.account_id}/media", data=form)
        return _id_of(body, "media container")

    async def container_status(self, container_id: str) -> ContainerStatus:
        body = await self._call("GET", container_id, params={"fields": "status_code,status"})
        state = body.get("status_code")
        if state not in CONTAINER_STATES:
            raise GraphUnavailable(f"container {container_id} has an unknown status {state!r}")
        return ContainerStatus(state, str(body.get("status") or ""))

    async def wait_until_processed(
        self,
        container_id: str,
        *,
        interval: float,
        max_wait: float,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> ContainerStatus:
        """Poll until the container leaves ``IN_PROGRESS`` or ``max_wait`` seconds pass;
        return the last status seen (still ``IN_PROGRESS`` when the wait ran out)."""
        deadline = clock() + max_wait
        while True:
            status = await self.container_status(container_id)
            if status.state != "IN_PROGRESS":
                return status
            remaining = deadline - clock()
            if remaining <= 0:
                return status
            await sleep(min(interval, remaining))

    async def publish(self, container_id: str) -> str:
        """Publish a FINISHED container; return the new media id."""
        body = await self._call(
            "POST", f"{self.account_id}/media_publish", data={"creation_id": container_id}
        )
        return _id_of(body, "published media")

    async def publishing_limit(self) -> PublishingQuota:
        body = await self._call(
            "GET",
            f"{self.account_id}/content_publishing_limit",
            params={"fields": "quota_usage,config"},
        )
        data = body.get("data")
        entry = data[0] if isinstance(data, list) and data else {}
        config = entry.get("config") or {}
        try:
            return PublishingQuota(
                usage=int(entry.get("quota_usage", 0)),
                total=int(config.get("quota_total", 50)),
                duration_seconds=int(config.get("quota_duration", 86_400)),
            )
        except (TypeError, ValueError):
            raise GraphUnavailable("content_publishing_limit sent a malformed answer") from None

    async def recent_media(self, limit: int = 25) -> list[PublishedMedia]:
        """The account's newest media, newest first."""
        body = await self._call(
            "GET",
            f"{self.account_id}/media",
            params={
                "fields": "id,caption,media_type,media_product_type,timestamp",
                "limit": str(limit),
            },
        )
        media = []
        for item in body.get("data") or []:
            if isinstance(item, dict) and item.get("id"):
                media.append(
                    PublishedMedia(
                        str(item["id"]),
                        str(item.get("caption") or ""),
                        _timestamp(item.get("timestamp")),
                        _upper_or_none(item.get("media_type")),
                        _upper_or_none(item.get("media_product_type")),
                    )
                )
        return media

    # -- transport and errors --------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, params=params, data=data)
        except httpx2.TransportError as exc:
            raise GraphUnavailable(
                f"Graph API {method} {_shown(path)} got no answer: {type(exc).__name__}"
                f"{': ' + self._scrub(str(exc)) if str(exc) else ''}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code < 400 and isinstance(body, dict) and "error" not in body:
            return body
        raise self._error(method, path, response, body)

    def _error(self, method: str, path: str, response: httpx2.Response, body: Any) -> GraphError:
        status = response.status_code
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = _int_or_none(error.get("code"))
        subcode = _int_or_none(error.get("error_subcode"))
        text = self._scrub(
            str(error.get("error_user_msg") or error.get("message") or f"HTTP {status}")
        )
        where = f"Graph API {method} {_shown(path)}"
        details = {"code": code, "subcode": subcode, "status": status}
        if code == TOKEN_CODE:
            return TokenExpired(
                f"the Instagram access token ({ACCESS_TOKEN}) is expired or invalid: {text}. "
                "Create a new long-lived token and set it in the environment or .env",
                **details,
            )
        limited = status == 429 or (code in RATE_LIMIT_CODES and subcode != SPAM_SUBCODE)
        if limited or (code == PUBLISH_LIMIT_CODE and subcode == PUBLISH_LIMIT_SUBCODE):
            return RateLimited(
                f"{where} is rate limited: {text}",
                retry_after=_retry_after(response),
                **details,
            )
        if status >= 500 or error.get("is_transient") is True:
            return GraphUnavailable(f"{where} failed on Instagram's side: {text}", **details)
        return GraphError(f"{where} failed: {text}", **details)

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, "***") if secret else text


def _id_of(body: Mapping[str, Any], what: str) -> str:
    value = body.get("id")
    if not value:
        raise GraphUnavailable(f"the Graph API answered without the id of the {what}")
    return str(value)


def _shown(path: str) -> str:
    return "/" + path


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _upper_or_none(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def _retry_after(response: httpx2.Response) -> float:
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return DEFAULT_RETRY_AFTER


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # The Graph API writes offsets as +0000.
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    return parsed.astimezone(UTC)
