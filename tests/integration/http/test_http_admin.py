"""Admin over real HTTP: persona, memories, relationships, state and mood, consolidation.
Every edit shows in the very next message's assembled context."""

from __future__ import annotations

from api_support import RunningApi, assert_error

BASE = "/api/v1/agents/fish"
CHAT = f"{BASE}/channels/general/messages"


async def _say(api: RunningApi, author: str, text: str) -> dict[str, object]:
    async with api.client(api.chat_key) as client:
        response = await client.post(CHAT, json={"author_id": author, "text": text})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_persona_items_are_added_edited_and_removed_live(api: RunningApi) -> None:
    async with api.client() as client:
        persona = (await client.get(f"{BASE}/persona")).json()
        assert persona["name"] == "Finnegan" and "trait" in persona["kinds"]
        before = len(persona["items"])
        added = await client.post(
            f"{BASE}/persona/items", json={"kind": "trait", "text": "collects blue marbles"}
        )
        assert added.status_code == 201
        item = added.json()
        assert item["kind"] == "trait" and item["text"] == "collects blue marbles"
        edited = await client.patch(
            f"{BASE}/persona/items/{item['id']}", json={"text": "collects red marbles"}
        )
        assert edited.json()["text"] == "collects red marbles"
        items = (await client.get(f"{BASE}/persona")).json()["items"]
        assert len(items) == before + 1
        assert {"id": item["id"], "kind": "trait", "text": "collects red marbles"}.items() <= next(
            i for i in items if i["id"] == item["id"]
        ).items()
        bad_kind = await client.post(f"{BASE}/persona/items", json={"kind": "x", "text": "y"})
        blank = await client.patch(f"{BASE}/persona/items/{item['id']}", json={"text": ""})
        removed = await client.delete(f"{BASE}/persona/items/{item['id']}")
        again = await client.delete(f"{BASE}/persona/items/{item['id']}")
    assert_error(bad_kind, 422)
    assert_error(blank, 422)
    assert removed.status_code == 204
    assert_error(again, 404)


async def test_memories_of_a_user_reach_the_next_reply(api: RunningApi) -> None:
    await _say(api, "ana", "@fish hello, I am Ana")
    async with api.client() as client:
        unknown = await client.post(f"{BASE}/users/nobody/memories", json={"fact": "x"})
        written = await client.post(
            f"{BASE}/users/ana/memories", json={"fact": "Ana keeps bees", "category": "hobby"}
        )
        assert written.status_code == 201 and written.json()["outcome"] == "new"
        facts = (await client.get(f"{BASE}/users/ana/memories")).json()
        assert [f["fact"] for f in facts] == ["Ana keeps bees"]
    assert_error(unknown, 404)
    outcome = await _say(api, "ana", "@fish do you remember my bees?")
    assert "Ana keeps bees" in outcome["context"]["user_facts"]  # type: ignore[index]

    fact_id = facts[0]["id"]
    async with api.client() as client:
        replaced = await client.put(
            f"{BASE}/users/ana/memories/{fact_id}", json={"fact": "Ana keeps wasps"}
        )
        assert replaced.status_code == 200
        new_id = replaced.json()["fact_id"]
        assert [f["fact"] for f in (await client.get(f"{BASE}/users/ana/memories")).json()] == [
            "Ana keeps wasps"
        ]
        wrong_user = await client.delete(f"{BASE}/users/bo/memories/{new_id}")
        deleted = await client.delete(f"{BASE}/users/ana/memories/{new_id}")
        assert (await client.get(f"{BASE}/users/ana/memories")).json() == []
    assert_error(wrong_user, 404)
    assert deleted.status_code == 204


async def test_relationship_edits_shape_the_next_reply(api: RunningApi) -> None:
    await _say(api, "bo", "@fish hi")
    async with api.client() as client:
        current = (await client.get(f"{BASE}/users/bo/relationship")).json()
        assert 0 <= current["rapport"] <= 10 and current["words"]
        edited = await client.patch(
            f"{BASE}/users/bo/relationship", json={"anger": 9, "trust": 1.5}
        )
        out_of_range = await client.patch(f"{BASE}/users/bo/relationship", json={"anger": 11})
        unknown = await client.get(f"{BASE}/users/nobody/relationship")
    assert edited.json()["anger"] == 9 and edited.json()["trust"] == 1.5
    assert_error(out_of_range, 422)
    assert_error(unknown, 404)
    outcome = await _say(api, "bo", "@fish are we ok?")
    # The message itself nudges the values a little; the edit is what dominates.
    assert outcome["context"]["relationship"]["anger"] > 7  # type: ignore[index]


async def test_user_view_and_forgetting(api: RunningApi) -> None:
    await _say(api, "cy", "@fish I am Cy")
    async with api.client() as client:
        await client.post(f"{BASE}/users/cy/memories", json={"fact": "Cy sails"})
        user = (await client.get(f"{BASE}/users/cy")).json()
        assert user["user_id"] == "cy" and user["message_count"] >= 1
        assert [f["fact"] for f in user["facts"]] == ["Cy sails"]
        forgotten = (await client.delete(f"{BASE}/users/cy")).json()
        assert forgotten["facts"] == 1 and forgotten["messages"] >= 1
        assert_error(await client.get(f"{BASE}/users/cy"), 404)


async def test_mood_and_global_state(api: RunningApi) -> None:
    async with api.client() as client:
        mood = (await client.get(f"{BASE}/mood")).json()
        assert set(mood) >= {"anger", "happiness", "energy", "curiosity", "day", "words"}
        set_mood = await client.patch(f"{BASE}/mood", json={"happiness": 10, "anger": 0})
        assert set_mood.json()["happiness"] == 10 and set_mood.json()["anger"] == 0
        assert_error(await client.patch(f"{BASE}/mood", json={"energy": 11}), 422)
        put = await client.put(f"{BASE}/state/status_text", json={"value": "swimming"})
        assert put.json() == {"key": "status_text", "value": "swimming"}
        state = {e["key"]: e["value"] for e in (await client.get(f"{BASE}/state")).json()}
        assert state["status_text"] == "swimming" and state["daily_mood_happiness"] == "10"
        assert (await client.delete(f"{BASE}/state/status_text")).status_code == 204
        assert_error(await client.delete(f"{BASE}/state/status_text"), 404)
    outcome = await _say(api, "ana", "@fish how are you?")
    assert outcome["context"]["mood"]["happiness"] == 10  # type: ignore[index]


async def test_consolidation_runs_on_demand(api: RunningApi) -> None:
    said = [f"@fish I love sailing boats number {i}" for i in range(3)]
    for text in said:
        await _say(api, "ana", text)
    async with api.client() as client:
        assert (await client.get(f"{BASE}/users/ana/memories")).json() == []
        report = await client.post(f"{BASE}/consolidate")
        assert report.status_code == 200, report.text
        done = report.json()
        # The three messages (and the bot's replies) moved from the log to the archive ...
        assert done["errors"] == [] and done["messages_archived"] >= 3
        assert await api.store.messages.count("fish", archived=True) == done["messages_archived"]
        assert await api.store.messages.count("fish") == 0
        # ... and what Ana said about herself became a fact of hers.
        facts = (await client.get(f"{BASE}/users/ana/memories")).json()
        assert done["facts_new"] >= 1 and len(facts) >= 1
        assert any("sailing" in f["fact"].lower() for f in facts), facts
        # Safe to repeat: nothing is left to move, nothing is duplicated.
        again = (await client.post(f"{BASE}/consolidate")).json()
        assert again["messages_archived"] == 0 and again["facts_new"] == 0
        assert len((await client.get(f"{BASE}/users/ana/memories")).json()) == len(facts)
