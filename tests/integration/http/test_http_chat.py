"""Chat over real HTTP: a message in, the decision, the reply and its context out."""

from __future__ import annotations

import httpx
from api_support import RunningApi, assert_error

from carrier.testing.statements import statements_on

CHAT = "/api/v1/agents/fish/channels/general/messages"


async def test_a_mention_is_answered_with_its_reason_and_context(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        response = await client.post(
            CHAT, json={"author_id": "ana", "author_name": "Ana", "text": "@Finnegan hi there!"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"]["respond"] is True
    assert body["decision"]["reason"] == "mention"
    assert body["reply"]["reason"] == "mention"
    assert body["reply"]["text"]
    assert body["reply"]["reply_to_message_id"] == body["message_id"]
    context = body["context"]
    assert context["persona"] == "Finnegan"
    assert {"mood", "relationship", "user_facts", "transcript_messages"} <= set(context)
    assert body["timings_ms"]["total"] > 0


async def test_silence_has_a_reason_too(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        response = await client.post(
            CHAT,
            json={"author_id": "ana", "text": "the weather is nice today", "mentions_bot": False},
        )
    body = response.json()
    assert response.status_code == 200
    assert body["decision"]["respond"] is False and body["reply"] is None
    assert body["decision"]["reason"]


async def test_several_users_in_one_channel_build_one_log(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        for who in ("ana", "bo", "cy"):
            r = await client.post(CHAT, json={"author_id": who, "text": f"@fish I am {who}"})
            assert r.status_code == 200
        log = (await client.get(CHAT, params={"limit": 20})).json()
    authors = [m["author_id"] for m in log if not m["is_bot"]]
    assert sorted(authors) == ["ana", "bo", "cy"]
    assert sum(m["is_bot"] for m in log) == 3  # a reply to each mention


async def test_a_replayed_message_id_is_answered_once(api: RunningApi) -> None:
    message = {"author_id": "ana", "text": "@fish once?", "message_id": "m-1"}
    async with api.client(api.chat_key) as client:
        first = (await client.post(CHAT, json=message)).json()
        again = (await client.post(CHAT, json=message)).json()
    assert first["reply"] is not None
    assert again["reply"] is None and again["decision"]["reason"] == "duplicate"


async def test_agent_info_and_unknown_agent(api: RunningApi) -> None:
    async with api.client(api.chat_key) as client:
        info = await client.get("/api/v1/agents/fish")
        unknown = await client.post(
            "/api/v1/agents/shark/channels/general/messages",
            json={"author_id": "ana", "text": "hi"},
        )
    assert info.json() == {"id": "fish", "name": "Finnegan", "nicknames": ["fish", "Finny"]}
    assert_error(unknown, 404, "not_found")


async def test_health_and_readiness_need_no_key(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready", "database": "ok"}


async def test_the_mention_check_and_the_engine_share_one_fresh_config_read(
    api: RunningApi,
) -> None:
    """A chat request reads the config revision once, after it arrived: a nickname added
    just before is already a mention."""
    async with api.client(api.admin_key) as admin:
        added = await admin.post(
            "/api/v1/agents/fish/persona/items", json={"kind": "nickname", "text": "Gillbert"}
        )
        assert added.status_code == 201, added.text
    async with api.client(api.chat_key) as client:
        with statements_on(api.store, "config_revision") as revision:
            response = await client.post(
                CHAT, json={"author_id": "ana", "author_name": "Ana", "text": "@Gillbert hey"}
            )
    assert response.status_code == 200, response.text
    assert response.json()["decision"]["reason"] == "mention"
    assert len(revision) == 1
