"""The WebSocket fan-out: a reader that falls behind is dropped, the others keep getting
everything, and nothing is buffered without bound."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from carrier.clients.http.hub import ChannelHub, Listener


async def test_a_stuck_reader_is_dropped_and_the_others_get_everything() -> None:
    stuck = asyncio.Event()  # never set: this reader's sends never complete
    received: list[dict[str, Any]] = []

    async def never(frame: str) -> None:
        await stuck.wait()

    async def reads(frame: str) -> None:
        received.append(json.loads(frame))

    hub = ChannelHub(outbox_size=4)
    slow, fast = Listener(never, hub.outbox_size), Listener(reads, hub.outbox_size)
    for listener in (slow, fast):
        listener.start()
        hub.join("c", listener)
    taken = []
    for i in range(20):
        taken.append(hub.publish("c", {"n": i}))
        await asyncio.sleep(0)  # let the senders run
    # slow: one event in flight + 4 queued, then the outbox overflows and it is dropped.
    assert slow.gone.is_set() and slow.too_slow and not fast.gone.is_set()
    assert taken[:5] == [2] * 5 and taken[-1] == 1
    assert [e["n"] for e in received] == list(range(20))
    hub.leave("c", slow)
    assert hub.listeners("c") == 1
    for listener in (slow, fast):
        await listener.stop()


async def test_a_failed_send_marks_the_listener_gone() -> None:
    async def broken(frame: str) -> None:
        raise ConnectionResetError

    listener = Listener(broken)
    listener.start()
    assert listener.offer({"n": 1})
    await asyncio.wait_for(listener.gone.wait(), 5)
    assert not listener.offer({"n": 2})
    await listener.stop()


async def test_a_broadcast_is_encoded_once_for_all_its_listeners() -> None:
    frames: list[list[str]] = [[], [], []]

    def reader(n: int) -> Any:
        async def read(frame: str) -> None:
            frames[n].append(frame)

        return read

    hub = ChannelHub()
    listeners = [Listener(reader(n)) for n in range(3)]
    for listener in listeners:
        listener.start()
        hub.join("c", listener)
    assert hub.publish("c", {"type": "reply", "text": "blub ü"}) == 3
    assert listeners[0].offer({"type": "outcome", "n": 1})
    for listener in listeners:
        await listener.flush(5)
    # The very same text object went to every listener; the per-client event to one.
    assert frames[1][0] is frames[0][0] and frames[2][0] is frames[0][0]
    assert json.loads(frames[0][0]) == {"type": "reply", "text": "blub ü"}
    assert [json.loads(f)["type"] for f in frames[0]] == ["reply", "outcome"]
    assert [len(f) for f in frames] == [2, 1, 1]
    for listener in listeners:
        await listener.stop()
