"""Checking presented API keys without a database read on every request.

A key that checked out as active is remembered (by its SHA-256, never in clear) for
``api.key_cache_seconds``; within that time a request with it costs a hash and a constant-time
compare instead of a query.  Expiry is still judged on every use against the clock, so an
expired key is refused at once; a revocation (``carrier apikey revoke``, another process) takes
effect within ``key_cache_seconds``.  Unknown, expired and revoked keys are never remembered: a
bad key is looked up every time (concurrent look-ups of one key share a query).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from carrier.engine.coalesce import ReadCoalescer
from carrier.store.apikeys import KEY_PREFIX, ApiKey, ApiKeyRepository, Verified, hash_key

_MAX_KEY_CHARS = 200


@dataclass(frozen=True, slots=True)
class _Known:
    digest: str
    key: ApiKey
    checked_at: float


class KeyChecker:
    """Verifies presented keys of ``agent_id`` against ``keys``, remembering active ones for
    ``ttl_seconds`` (0: read the database on every check)."""

    def __init__(
        self,
        keys: ApiKeyRepository,
        agent_id: str,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._agent_id = agent_id
        self._ttl = ttl_seconds
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._reads = ReadCoalescer()

    async def verify(self, presented: str) -> Verified:
        """The key's record and its problem (``None``: usable), as
        :meth:`ApiKeyRepository.verify` says it, at most ``ttl_seconds`` old."""
        if not presented.startswith(KEY_PREFIX) or len(presented) > _MAX_KEY_CHARS:
            return Verified(None, "unknown")  # not a key of ours: nothing to hash or look up
        digest = hash_key(presented)
        known = self._known.get(digest)
        now = self._clock()
        if known is not None:
            # The dict found it by the digest; the comparison that decides is constant-time.
            if now - known.checked_at < self._ttl and hmac.compare_digest(known.digest, digest):
                status = known.key.status(datetime.now(UTC))
                return Verified(known.key, None if status == "active" else status)
            del self._known[digest]
        # A burst of checks of one key shares one query, never one begun before it asked.
        verified = await self._reads.read(
            digest, lambda: self._keys.verify(self._agent_id, presented)
        )
        if self._ttl > 0 and verified.problem is None and verified.key is not None:
            self._forget_stale(now)
            self._known[digest] = _Known(digest, verified.key, now)
        return verified

    def _forget_stale(self, now: float) -> None:
        if len(self._known) < 64:
            return
        for digest, known in list(self._known.items()):
            if now - known.checked_at >= self._ttl:
                del self._known[digest]
