"""The in-memory half of the sqlite vector index: sign bits per (agent, model).

Per vector: one bit per dimension (set when the component is positive), the fact id and
small integer codes for its user and guild - about 64 bytes for 384 dimensions.  Hamming
distance between sign bits ranks candidates for the exact re-rank that
:mod:`carrier.memory.vectors.sqlite_index` does on the stored float32 vectors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Words = npt.NDArray[np.uint64]

NO_GUILD = -1


def sign_bits(vectors: npt.NDArray[np.float32]) -> Words:
    """One bit per dimension (set when positive), padded to whole 64-bit words: (words,)
    for one vector, (rows, words) for a matrix."""
    packed = np.packbits(vectors > 0, axis=-1)
    pad = (-packed.shape[-1]) % 8
    if pad:
        widths = [(0, 0)] * (packed.ndim - 1) + [(0, pad)]
        packed = np.pad(packed, widths)
    return np.ascontiguousarray(packed).view(np.uint64)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The in-memory part of one (agent, model): immutable, replaced on every change, so a
    search in a worker thread never sees a half-applied write."""

    dim: int
    ids: Int64s
    users: Int32s
    guilds: Int32s
    bits: Words  # word-major, (words, rows): the scan then runs over contiguous columns

    @classmethod
    def empty(cls, dim: int = 0) -> Snapshot:
        words = max(1, (dim + 63) // 64)
        return cls(
            dim,
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.int32),
            np.empty((words, 0), np.uint64),
        )

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.users.nbytes + self.guilds.nbytes + self.bits.nbytes)

    def without(self, ids: Int64s) -> Snapshot:
        if self.size == 0 or ids.size == 0:
            return self
        keep = ~np.isin(self.ids, ids)
        if keep.all():
            return self
        return Snapshot(
            self.dim, self.ids[keep], self.users[keep], self.guilds[keep], self.bits[:, keep]
        )

    def with_rows(self, ids: Int64s, users: Int32s, guilds: Int32s, bits: Words) -> Snapshot:
        """These rows added, replacing rows of the same ids."""
        base = self.without(ids)
        if base.size == 0:
            return Snapshot(self.dim, ids, users, guilds, bits)
        return Snapshot(
            self.dim,
            np.concatenate([base.ids, ids]),
            np.concatenate([base.users, users]),
            np.concatenate([base.guilds, guilds]),
            np.concatenate([base.bits, bits], axis=1),
        )


@dataclass(slots=True)
class ModelCache:
    """One (agent, model): the snapshot, the versions it reflects, and the codes."""

    version: int = -1
    reset_version: int = -1
    snapshot: Snapshot = field(default_factory=Snapshot.empty)
    user_codes: dict[str, int] = field(default_factory=dict)
    guild_codes: dict[str, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def user_code(self, user_id: str) -> int:
        return self.user_codes.setdefault(user_id, len(self.user_codes))

    def guild_code(self, guild_id: str | None) -> int:
        if guild_id is None:
            return NO_GUILD
        return self.guild_codes.setdefault(guild_id, len(self.guild_codes))

    def rows(
        self, ids: Sequence[int], users: Sequence[str], guilds: Sequence[str | None], bits: Words
    ) -> tuple[Int64s, Int32s, Int32s, Words]:
        """Snapshot columns for new rows (``bits`` as :func:`sign_bits` gives them)."""
        return (
            np.asarray(ids, dtype=np.int64),
            np.fromiter((self.user_code(u) for u in users), np.int32, len(users)),
            np.fromiter((self.guild_code(g) for g in guilds), np.int32, len(guilds)),
            np.ascontiguousarray(bits.T),
        )


def hamming_candidates(
    snapshot: Snapshot, query_bits: Words, rows: npt.NDArray[np.intp] | None, pool: int
) -> Int64s:
    """The ids of the ``pool`` rows (of ``rows``, or all) nearest in Hamming distance."""
    ids = snapshot.ids if rows is None else snapshot.ids[rows]
    if ids.shape[0] <= pool:
        return ids
    bits = snapshot.bits if rows is None else snapshot.bits[:, rows]
    # Word by word over contiguous columns: ~6x faster than a row-wise sum.
    distance = np.bitwise_count(bits[0] ^ query_bits[0]).astype(np.uint16)
    for word in range(1, bits.shape[0]):
        distance += np.bitwise_count(bits[word] ^ query_bits[word])
    return ids[np.argpartition(distance, pool)[:pool]]


def selected_rows(
    snapshot: Snapshot, user_code: int | None, guild_codes: list[int] | None
) -> npt.NDArray[np.intp] | None:
    """Row positions passing the filters, or ``None`` for all rows."""
    if user_code is None and guild_codes is None:
        return None
    mask = np.ones(snapshot.size, dtype=bool)
    if user_code is not None:
        mask &= snapshot.users == user_code
    if guild_codes is not None:
        mask &= np.isin(snapshot.guilds, np.asarray(guild_codes, dtype=np.int32))
    return np.flatnonzero(mask)
