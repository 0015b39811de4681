"""/metrics: response times, error rate, throttles per scope, active users, memory sizes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_support import make_settings, running_api
from prometheus_client.parser import text_string_to_metric_families

CHAT = "/api/v1/agents/fish/channels/general/messages"
ROUTE = "/api/v1/agents/{agent_id}/channels/{channel_id}/messages"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_traffic_errors_throttles_users_and_memory(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limits={"per_user": "3/minute"})
    async with running_api(settings) as api:
        async with api.client(api.chat_key) as client:
            for who in ("ana", "bo"):
                for i in range(4):  # the 4th message of each is over the per-user limit
                    r = await client.post(CHAT, json={"author_id": who, "text": f"@fish {i}"})
                    assert r.status_code == 200
            assert (await client.post(CHAT, json={"author_id": 1})).status_code == 422
        async with api.client() as admin:
            await admin.post("/api/v1/agents/fish/users/ana/memories", json={"fact": "Ana sails"})
        async with httpx.AsyncClient(base_url=api.url) as anonymous:
            response = await anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("carrier_http_responses_total", route=ROUTE, method="POST", status="2xx") == 8
    assert value("carrier_http_responses_total", route=ROUTE, method="POST", status="4xx") == 1
    assert value("carrier_http_request_seconds_count", route=ROUTE, method="POST") == 9
    assert value("carrier_throttled_total", scope="user") == 2
    assert value("carrier_active_users") == 2
    assert value("carrier_memory_size", kind="facts") == 1
    assert value("carrier_memory_size", kind="short_term_messages") >= 8
    assert value("carrier_reply_seconds_count") >= 6


async def test_metrics_count_global_throttles_and_server_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, rate_limits={"global": "2/minute"})
    async with running_api(settings) as api:
        async with api.client(api.chat_key) as client:
            for i in range(5):  # five people, one message each: the last three over the limit
                r = await client.post(CHAT, json={"author_id": f"user{i}", "text": f"@fish {i}"})
                assert r.status_code == 200

        async def broken(_agent_id: str) -> dict[str, str]:
            raise RuntimeError("a bug")

        monkeypatch.setattr(api.store.state, "all", broken)
        async with api.client() as admin:
            assert (await admin.get("/api/v1/agents/fish/state")).status_code == 500
            assert (await admin.get("/api/v1/agents/fish/persona")).status_code == 200
        async with httpx.AsyncClient(base_url=api.url) as anonymous:
            response = await anonymous.get("/metrics")
    samples = _samples(response.text)
    state = "/api/v1/agents/{agent_id}/state"
    assert samples[("carrier_throttled_total", frozenset({("scope", "global")}))] == 3
    assert ("carrier_throttled_total", frozenset({("scope", "user")})) not in samples
    labels = {"route": state, "method": "GET", "status": "5xx"}
    assert samples[("carrier_http_responses_total", frozenset(labels.items()))] == 1
    # The error rate is 5xx over all responses: the persona read was a 2xx.
    ok = {"route": "/api/v1/agents/{agent_id}/persona", "method": "GET", "status": "2xx"}
    assert samples[("carrier_http_responses_total", frozenset(ok.items()))] == 1
