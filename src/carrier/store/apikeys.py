"""API keys for the HTTP API: generated here, shown once, stored only as a SHA-256 hash.

A key is ``carrier_`` followed by 43 URL-safe characters (256 random bits from
:mod:`secrets`).  The database keeps its SHA-256 (a fast hash is enough for a random secret of
that size; a slow password hash would cost milliseconds on every request), the first
characters as a ``prefix`` so an operator can tell keys apart, its scopes, and when it expires
or was revoked.  Verification looks the hash up and compares it with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from carrier.store.database import Database
from carrier.store.schema import api_keys

SCOPES: tuple[str, ...] = ("chat", "admin")
"""``chat``: talk to the agent (REST and WebSocket); ``admin``: read and edit its state."""

KEY_PREFIX = "carrier_"
_PREFIX_CHARS = len(KEY_PREFIX) + 6
# last_used_at is a hint for operators, not an audit log: write it at most this often.
_TOUCH_EVERY = timedelta(minutes=1)


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never the key itself)."""

    id: int
    agent_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``secret`` is the only time the key is ever available in clear."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of checking a presented key: ``key`` is set when it exists; ``problem`` is
    ``None`` for a usable key, else ``unknown``, ``expired`` or ``revoked``."""

    key: ApiKey | None
    problem: str | None


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, de-duplicated in their canonical order; :class:`ValueError` names an
    unknown one."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


def _row(row: object) -> ApiKey:
    return ApiKey(
        id=int(row.id),  # type: ignore[attr-defined]
        agent_id=row.agent_id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        scopes=tuple(row.scopes.split()),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
        last_used_at=row.last_used_at,  # type: ignore[attr-defined]
    )


_COLUMNS = (
    api_keys.c.id,
    api_keys.c.agent_id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.key_hash,
    api_keys.c.scopes,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
    api_keys.c.last_used_at,
)


class ApiKeyRepository:
    """API keys per agent.  Every call reads or writes the database right now, so a key
    revoked by ``carrier apikey revoke`` in another process is refused on its next use."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine
        self._touched: dict[int, datetime] = {}

    async def create(
        self,
        agent_id: str,
        name: str,
        scopes: Iterable[str],
        *,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> CreatedKey:
        """A new key with ``scopes``; the returned ``secret`` is not stored anywhere.

        Raises :class:`ValueError` for a blank or over-long name, an unknown scope, or a name
        already used by an active key of this agent.
        """
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("a key needs a name of 1 to 100 characters")
        canonical = check_scopes(scopes)
        now = now or datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise ValueError("the expiry must be in the future")
        for existing in await self.list(agent_id):
            if existing.name == name and existing.status(now) == "active":
                raise ValueError(f"an active key named {name!r} exists; revoke it first")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        values = {
            "agent_id": agent_id,
            "name": name,
            "prefix": secret[:_PREFIX_CHARS],
            "key_hash": hash_key(secret),
            "scopes": " ".join(canonical),
            "created_at": now,
            "expires_at": expires_at,
        }
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(api_keys.insert().values(**values))
                (key_id,) = result.inserted_primary_key or (None,)
        except IntegrityError as exc:  # pragma: no cover - 256 random bits do not collide
            raise ValueError("could not store the key; try again") from exc
        key = ApiKey(
            id=int(key_id or 0),
            agent_id=agent_id,
            name=name,
            prefix=str(values["prefix"]),
            scopes=canonical,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
        return CreatedKey(key, secret)

    async def list(self, agent_id: str) -> list[ApiKey]:
        """Every key of the agent, revoked and expired ones too, oldest first."""
        query = select(*_COLUMNS).where(api_keys.c.agent_id == agent_id).order_by(api_keys.c.id)
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def revoke(self, agent_id: str, id_or_name: str, *, now: datetime | None = None) -> int:
        """Revoke the key with this id, or the active keys with this name; returns how many
        were revoked (0: none matched or already revoked)."""
        now = now or datetime.now(UTC)
        where = [api_keys.c.agent_id == agent_id, api_keys.c.revoked_at.is_(None)]
        if id_or_name.isdigit():
            where.append(api_keys.c.id == int(id_or_name))
        else:
            where.append(api_keys.c.name == id_or_name)
        async with self._engine.begin() as conn:
            result = await conn.execute(update(api_keys).where(*where).values(revoked_at=now))
            return int(result.rowcount)

    async def verify(
        self, agent_id: str, presented: str, *, now: datetime | None = None
    ) -> Verified:
        """Check a presented key for ``agent_id``.  Never raises for bad input."""
        now = now or datetime.now(UTC)
        if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
            return Verified(None, "unknown")
        digest = hash_key(presented)
        query = select(*_COLUMNS).where(api_keys.c.key_hash == digest)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        # The lookup is by an index on the hash; the comparison that decides is constant-time.
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return Verified(None, "unknown")
        key = _row(row)
        if key.agent_id != agent_id:
            return Verified(None, "unknown")
        status = key.status(now)
        if status != "active":
            return Verified(key, status)
        await self._touch(key.id, now)
        return Verified(key, None)

    async def _touch(self, key_id: int, now: datetime) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < _TOUCH_EVERY:
            return
        self._touched[key_id] = now
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now)
            )
