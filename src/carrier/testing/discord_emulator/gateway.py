"""The emulated gateway: the websocket protocol (HELLO, heartbeats, IDENTIFY -> READY and
GUILD_CREATE, RESUME -> replay and RESUMED, INVALID_SESSION, presence updates, member
chunks), per-session sequence numbers and replay buffers, sharding and intents."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from carrier.testing.discord_emulator.flags import Intent
from carrier.testing.discord_emulator.model import JSON, World
from carrier.testing.discord_emulator.records import Changes

HEARTBEAT_INTERVAL_MS = 41250
PRIVILEGED_INTENTS = int(Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT)
# A per-session view of an event's data; None means this session does not get the event.
Transform = Callable[["GatewaySession", JSON], JSON | None]


def requires(intent: Intent) -> Transform:
    """A transform that sends the event only to sessions that asked for ``intent``."""

    def transform(session: GatewaySession, data: JSON) -> JSON | None:
        return data if session.has(intent) else None

    return transform


@dataclass(eq=False)
class GatewaySession:
    """One identified gateway session (one shard of one client). ``buffer`` holds the last
    ``replay_limit`` frames, ``buffer[n]`` having sequence ``first_seq + n``; ``sent_seq`` is
    the last sequence written to the attached socket."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    token: str
    buffer: list[str] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None
    sent_seq: int = 0
    first_seq: int = 1
    replay_limit: int = 10_000
    alive: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def covers(self, guild_id: int | None) -> bool:
        """Whether this shard gets events of ``guild_id`` (DMs go to shard 0)."""
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.shard_count == self.shard_id

    def has(self, intent: Intent) -> bool:
        return bool(self.intents & intent)

    def append(self, event: str, data: Any) -> int:
        seq = self.last_seq + 1
        self.buffer.append(json.dumps({"op": 0, "t": event, "s": seq, "d": data}))
        if len(self.buffer) > self.replay_limit:
            # Discord keeps a bounded backlog too: a RESUME from before it is refused.
            dropped = len(self.buffer) - self.replay_limit
            del self.buffer[:dropped]
            self.first_seq += dropped
        return seq

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.buffer) - 1

    def can_replay_after(self, seq: int) -> bool:
        return self.first_seq - 1 <= seq <= self.last_seq


class Gateway:
    """Serves ``/gateway`` and fans dispatched events out to the live sessions."""

    def __init__(
        self,
        world: World,
        *,
        bot_user_id: int,
        token: str | None,
        changes: Changes,
        resume_url: Callable[[], str],
    ) -> None:
        self._world = world
        self._bot_user_id = bot_user_id
        self._token = token
        self._changes = changes
        self._resume_url = resume_url
        self.sessions: list[GatewaySession] = []
        self.presences: list[JSON] = []
        self.connections: list[str] = []  # the path of every websocket connection
        self.identifies = 0
        self.resumes = 0
        self.invalidated = 0
        # The privileged intents switched on in the "developer portal"; asking for others
        # closes the socket with 4014 (discord.py raises PrivilegedIntentsRequired).
        self.privileged_intents_enabled = PRIVILEGED_INTENTS
        self.replay_limit = 10_000  # events kept per session for RESUME
        self.open = asyncio.Event()
        self.open.set()
        self._tasks: set[asyncio.Task[None]] = set()

    # fan-out -----------------------------------------------------------------------------

    def enqueue(
        self,
        event: str,
        data: JSON,
        *,
        guild_id: int | None,
        transform: Transform | None = None,
    ) -> list[GatewaySession]:
        """Give the event a sequence number in every live session that should get it (also
        in sessions whose socket is down: they get it on RESUME). Synchronous, so events
        keep the order in which the emulator produced them."""
        targets = []
        for session in self.sessions:
            if not session.alive or not session.covers(guild_id):
                continue
            view = transform(session, data) if transform else data
            if view is None:
                continue
            session.append(event, view)
            targets.append(session)
        return targets

    async def dispatch(
        self, event: str, data: JSON, *, guild_id: int | None, transform: Transform | None = None
    ) -> None:
        for session in self.enqueue(event, data, guild_id=guild_id, transform=transform):
            await self.flush(session)

    def dispatch_nowait(
        self, event: str, data: JSON, *, guild_id: int | None, transform: Transform | None = None
    ) -> None:
        for session in self.enqueue(event, data, guild_id=guild_id, transform=transform):
            self._spawn(self.flush(session))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait until every queued frame has been written to the attached sockets."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def flush(self, session: GatewaySession) -> None:
        async with session.lock:
            while (ws := session.ws) is not None and session.sent_seq < session.last_seq:
                if ws.closed:
                    break
                try:
                    index = max(0, session.sent_seq + 1 - session.first_seq)
                    await ws.send_str(session.buffer[index])
                except (ConnectionError, RuntimeError):
                    break
                session.sent_seq = session.first_seq + index

    # disconnects -------------------------------------------------------------------------

    def attached_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions if s.alive and s.ws is not None]

    async def drop(self, *, resume: bool, abrupt: bool, code: int = 4000) -> int:
        """Cut every attached socket; ``resume`` False also forgets the sessions, so a
        RESUME gets INVALID_SESSION. Returns how many sockets were cut."""
        dropped = self.attached_sessions()
        for session in dropped:
            ws, transport = session.ws, session.transport
            async with session.lock:
                session.ws = None
                session.transport = None
            if not resume:
                session.alive = False
            if abrupt and transport is not None:
                transport.close()
            elif ws is not None:
                self._spawn(ws.close(code=code))
        return len(dropped)

    async def close_all(self) -> None:
        for session in self.sessions:
            session.alive = False
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)
            session.ws = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # the websocket -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await self.open.wait()
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True)
        await ws.prepare(request)
        self.connections.append(request.path)
        session: GatewaySession | None = None
        await ws.send_str(
            json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                data = payload.get("d")
                if op == 1:
                    await self._send_raw(ws, session, {"op": 11})
                elif op == 2:
                    if session is not None:
                        await ws.close(code=4005, message=b"Already authenticated.")
                        break
                    session = await self._identify(ws, request, data)
                elif op == 6:
                    session = await self._resume(ws, request, data)
                elif op == 3:
                    self.presences.append(data)
                    self._changes.notify()
                elif op == 8 and session is not None:
                    await self._member_chunk(session, data)
                elif op == 4:
                    continue  # voice state update: voice is not emulated
                else:
                    await ws.close(code=4001, message=b"Unknown opcode.")
                    break
        finally:
            if session is not None and session.ws is ws:
                session.ws = None
                session.transport = None
        return ws

    async def _send_raw(
        self, ws: web.WebSocketResponse, session: GatewaySession | None, frame: JSON
    ) -> None:
        if ws.closed:
            return
        if session is not None and session.ws is ws:
            async with session.lock:
                await ws.send_str(json.dumps(frame))
        else:
            await ws.send_str(json.dumps(frame))

    async def _identify(
        self, ws: web.WebSocketResponse, request: web.Request, data: JSON
    ) -> GatewaySession | None:
        token = str(data.get("token", ""))
        if not token or (self._token is not None and token != self._token):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or [0, 1]
        if not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        if "intents" not in data:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        if int(data["intents"]) & PRIVILEGED_INTENTS & ~self.privileged_intents_enabled:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        for old in self.sessions:
            if old.shard_id == shard_id and old.shard_count == shard_count:
                old.alive = False
        self.sessions = [s for s in self.sessions if s.alive]
        session = GatewaySession(
            replay_limit=self.replay_limit,
            session_id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=int(data["intents"]),
            token=token,
            ws=ws,
            transport=request.transport,
        )
        self.sessions.append(session)
        world = self._world
        guild_ids = [g for g in world.guilds if session.covers(g)]
        bot = world.users[self._bot_user_id].payload() | {
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "email": None,
        }
        session.append(
            "READY",
            {
                "v": 10,
                "user": bot,
                "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self._resume_url(),
                "shard": [shard_id, shard_count],
                "application": {"id": str(self._bot_user_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
            },
        )
        members = session.has(Intent.GUILD_MEMBERS)
        for guild_id in guild_ids:
            session.append(
                "GUILD_CREATE", world.guild_payload(guild_id, full=True, members=members)
            )
        self.identifies += 1
        await self.flush(session)
        self._changes.notify()
        return session

    async def _resume(
        self, ws: web.WebSocketResponse, request: web.Request, data: JSON
    ) -> GatewaySession | None:
        session = next(
            (s for s in self.sessions if s.session_id == data.get("session_id") and s.alive), None
        )
        resume_from = int(data.get("seq") or 0)
        if (
            session is None
            or session.token != data.get("token")
            or not session.can_replay_after(resume_from)
        ):
            if session is not None and session.token == data.get("token"):
                session.alive = False  # too far behind: this session is over
            self.invalidated += 1
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            self._changes.notify()
            return None
        old = session.ws
        if old is not None and old is not ws:
            self._spawn(old.close(code=4000))
        async with session.lock:
            session.ws = ws
            session.transport = request.transport
            # Replay what the client did not acknowledge, in order, exactly once.
            session.sent_seq = resume_from
        await self.flush(session)
        session.append("RESUMED", {})
        await self.flush(session)
        self.resumes += 1
        self._changes.notify()
        return session

    async def _member_chunk(self, session: GatewaySession, data: JSON) -> None:
        guild_id = int(data["guild_id"])
        query = str(data.get("query") or "").lower()
        wanted: Iterable[int] | None = (
            {int(u) for u in data["user_ids"]} if data.get("user_ids") else None
        )
        members = []
        for member in self._world.guild_members(guild_id):
            user = self._world.users[member.user_id]
            if wanted is not None and member.user_id not in wanted:
                continue
            if query and not user.name.lower().startswith(query):
                continue
            members.append(member.payload(self._world))
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: JSON = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        session.append("GUILD_MEMBERS_CHUNK", chunk)
        await self.flush(session)
