"""The Graph API client: requests as documented, errors mapped to what a caller can act on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from carrier.clients.instagram.graph import (
    DEFAULT_RETRY_AFTER,
    GraphClient,
    GraphError,
    GraphUnavailable,
    RateLimited,
    TokenExpired,
)

TOKEN = "EAAG-unit-test-token-0123456789"


def client_for(handler: Callable[[httpx2.Request], httpx2.Response]) -> GraphClient:
    return GraphClient(
        "1784",
        SecretStr(TOKEN),
        base_url="https://graph.test",
        api_version="v99.0",
        transport=httpx2.MockTransport(handler),
    )


def graph_error(
    status: int, code: int, subcode: int | None = None, **extra: Any
) -> httpx2.Response:
    error: dict[str, Any] = {"message": f"error {code}", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    return httpx2.Response(status, json={"error": error})


async def test_requests_follow_the_content_publishing_api() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/media_publish"):
            return httpx2.Response(200, json={"id": "media-9"})
        if request.url.path.endswith("/media"):
            return httpx2.Response(200, json={"id": "container-1"})
        return httpx2.Response(200, json={"id": "container-1", "status_code": "FINISHED"})

    async with client_for(handler) as graph:
        assert await graph.create_container(caption="Blub #fish", image_url="http://x/a.jpg") == (
            "container-1"
        )
        assert await graph.create_container(caption="", video_url="http://x/v.mp4") == (
            "container-1"
        )
        assert (await graph.container_status("container-1")).state == "FINISHED"
        assert await graph.publish("container-1") == "media-9"

    image, reel, status, publish = seen
    assert (image.method, image.url.path) == ("POST", "/v99.0/1784/media")
    assert dict(httpx2.QueryParams(image.content.decode())) == {
        "caption": "Blub #fish",
        "image_url": "http://x/a.jpg",
    }
    assert dict(httpx2.QueryParams(reel.content.decode())) == {
        "caption": "",
        "media_type": "REELS",
        "video_url": "http://x/v.mp4",
    }
    assert status.url.params["fields"] == "status_code,status"
    assert dict(httpx2.QueryParams(publish.content.decode())) == {"creation_id": "container-1"}
    for request in seen:
        # The token travels in a header only: URLs end up in access logs.
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in str(request.url)


async def test_an_expired_token_names_the_variable_but_not_the_token() -> None:
    response = graph_error(400, 190, 463, message=f"Session has expired (token {TOKEN})")
    async with client_for(lambda _r: response) as graph:
        with pytest.raises(TokenExpired) as caught:
            await graph.publishing_limit()
    assert "INSTAGRAM_ACCESS_TOKEN" in str(caught.value)
    assert "expired or invalid" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert (caught.value.code, caught.value.subcode) == (190, 463)


@pytest.mark.parametrize("code", [4, 17, 32, 613])
async def test_rate_limit_codes_mean_retry_later(code: int) -> None:
    async with client_for(lambda _r: graph_error(400, code)) as graph:
        with pytest.raises(RateLimited) as caught:
            await graph.create_container(caption="", image_url="http://x/a.jpg")
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER
    assert caught.value.code == code


async def test_http_429_uses_retry_after() -> None:
    response = httpx2.Response(429, headers={"Retry-After": "42"}, text="slow down")
    async with client_for(lambda _r: response) as graph:
        with pytest.raises(RateLimited) as caught:
            await graph.publish("c")
    assert caught.value.retry_after == 42.0


async def test_the_publishing_limit_error_is_a_rate_limit() -> None:
    async with client_for(lambda _r: graph_error(400, 9, 2207042)) as graph:
        with pytest.raises(RateLimited):
            await graph.publish("c")


async def test_a_spam_restriction_is_not_a_rate_limit() -> None:
    async with client_for(lambda _r: graph_error(400, 4, 2207051)) as graph:
        with pytest.raises(GraphError) as caught:
            await graph.publish("c")
    assert not isinstance(caught.value, RateLimited)


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(500, text="<html>oops</html>"),
        httpx2.Response(503, json={"error": {"message": "down", "code": 2}}),
        graph_error(400, 2, is_transient=True),
    ],
)
async def test_server_side_failures_are_unavailable(response: httpx2.Response) -> None:
    async with client_for(lambda _r: response) as graph:
        with pytest.raises(GraphUnavailable):
            await graph.publish("c")


async def test_a_dropped_connection_is_unavailable() -> None:
    def drop(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")

    async with client_for(drop) as graph:
        with pytest.raises(GraphUnavailable, match="got no answer"):
            await graph.publish("c")


async def test_other_client_errors_are_plain_graph_errors() -> None:
    async with client_for(lambda _r: graph_error(400, 100, 2207052)) as graph:
        with pytest.raises(GraphError, match="error 100") as caught:
            await graph.create_container(caption="", image_url="http://x/a.jpg")
    assert type(caught.value) is GraphError


async def test_polling_stops_at_the_first_final_state() -> None:
    states = iter(["IN_PROGRESS", "IN_PROGRESS", "ERROR"])

    def handler(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"status_code": next(states), "status": "2207026"})

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with client_for(handler) as graph:
        status = await graph.wait_until_processed("c", interval=2, max_wait=60, sleep=sleep)
    assert (status.state, status.message) == ("ERROR", "2207026")
    assert slept == [2, 2]


async def test_polling_is_bounded() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return httpx2.Response(200, json={"status_code": "IN_PROGRESS"})

    async with client_for(handler) as graph:
        status = await graph.wait_until_processed(
            "c", interval=5, max_wait=12, sleep=sleep, clock=lambda: now[0]
        )
    assert status.state == "IN_PROGRESS"
    assert now[0] == pytest.approx(12)
    assert len(calls) == 4  # at 0, 5, 10 and 12 seconds


async def test_publishing_limit_and_recent_media_are_parsed() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("content_publishing_limit"):
            body = {
                "data": [{"quota_usage": 3, "config": {"quota_total": 50, "quota_duration": 86400}}]
            }
        else:
            body = {
                "data": [
                    {
                        "id": "m2",
                        "caption": "second",
                        "media_type": "VIDEO",
                        "media_product_type": "REELS",
                        "timestamp": "2026-11-21T10:00:00+0000",
                    },
                    {"id": "m1"},
                ]
            }
        return httpx2.Response(200, content=json.dumps(body).encode())

    async with client_for(handler) as graph:
        quota = await graph.publishing_limit()
        media = await graph.recent_media()
    assert (quota.usage, quota.total, quota.duration_seconds) == (3, 50, 86400)
    assert [(m.id, m.caption) for m in media] == [("m2", "second"), ("m1", "")]
    assert media[0].timestamp is not None and media[0].timestamp.hour == 10
    assert media[1].timestamp is None
    assert (media[0].media_type, media[0].media_product_type) == ("VIDEO", "REELS")
    assert (media[1].media_type, media[1].media_product_type) == (None, None)
    fields = seen[-1].url.params["fields"].split(",")
    assert {"id", "caption", "media_type", "media_product_type", "timestamp"} <= set(fields)
