"""Reading the message archive for search: full-text matches, rows by id, rows to embed.

The full-text objects come from migration 0006 and differ by database (neither is part of
the metadata shared by SQLite and PostgreSQL; :func:`is_search_object` names them so that
schema comparisons leave them out):

* SQLite: the FTS5 table ``message_archive_fts`` (external content, ``unicode61`` with
  diacritics removed), ranked by BM25;
* PostgreSQL: a GIN index over ``to_tsvector('simple', text)``, ranked by ``ts_rank_cd``.

A query matches a message that shares any of its words (an OR of the words, so a long
question still finds a message with one rare word of it); the ranking puts messages with
more and rarer shared words first, among the :data:`RECENT_MATCHES` most recent matches of
the scope (so the cost stays bounded however many messages share a common word).  Words
are taken from the query here, so no query syntax (quotes, ``NEAR``, ``-``, SQL) ever
reaches the database as syntax.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.store.database import Database
from carrier.store.messages import LoggedMessage
from carrier.store.schema import message_archive

FTS_TABLE = "message_archive_fts"
FTS_INDEX = "ix_message_archive_fts"
MAX_TERMS = 24
MAX_TERM_CHARS = 64
RECENT_MATCHES = 500
"""Only the scope's most recent matches are ranked: a query of common words matches much of
a large archive, and ranking all of it took ~20 ms per 20,000 messages (bench_archive.py)."""

_WORD = re.compile(r"\w+")
# The commonest English function words match nearly every message and say nothing about
# what a message is about, so the lexical query leaves them out (BM25 would rank them low,
# but a message sharing only "the" would still be returned).
STOP_WORDS = frozenset(
    {
        "a",
        "about",
        "after",
        "again",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "before",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "don",
        "for",
        "from",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "im",
        "ive",
        "youre",
        "thats",
        "dont",
        "lol",
        "ok",
        "okay",
        "yes",
        "yeah",
    }
)


def is_search_object(name: str | None, type_: str) -> bool:
    """Whether a schema object is one of migration 0006's full-text objects (the FTS5 table
    with its shadow tables on SQLite, the GIN index on PostgreSQL)."""
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
    return type_ == "index" and name == FTS_INDEX


def search_terms(query: str) -> list[str]:
    """The distinct words of ``query`` (lower-cased, first :data:`MAX_TERMS`); one-letter
    Latin words and :data:`STOP_WORDS` are left out, single characters of other scripts
    (CJK) kept."""
    terms: list[str] = []
    for word in _WORD.findall(query.casefold()):
        word = word.strip("_")[:MAX_TERM_CHARS]
        if not word or (len(word) == 1 and word.isascii()) or word in STOP_WORDS:
            continue
        if word not in terms:
            terms.append(word)
        if len(terms) == MAX_TERMS:
            break
    return terms


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """A message of the archive with its row id (the id search results refer to)."""

    id: int
    message: LoggedMessage
    deleted: bool = False


_MESSAGE_FIELDS = tuple(LoggedMessage.__dataclass_fields__)


def _archived(row: Any) -> ArchivedMessage:
    return ArchivedMessage(
        int(row.id),
        LoggedMessage(**{name: getattr(row, name) for name in _MESSAGE_FIELDS}),
        bool(row.deleted),
    )


_ROW_COLUMNS = (
    message_archive.c.id,
    message_archive.c.deleted,
    *(message_archive.c[name] for name in _MESSAGE_FIELDS),
)


class ArchiveRepository:
    """Search-side reads of ``message_archive`` (the writes are consolidation's)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def lexical(
        self,
        agent_id: str,
        query: str,
        *,
        guild_id: str | None,
        channel_id: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
    ) -> list[int]:
        """Ids of the archived messages (not deleted) of ``guild_id`` (``None``: messages
        without a guild) that share words with ``query``, best match first."""
        terms = search_terms(query)
        if not terms or limit < 1:
            return []
        params: dict[str, Any] = {"agent_id": agent_id, "limit": limit}
        scope = ["a.agent_id = :agent_id"]
        if guild_id is None:
            scope.append("a.guild_id IS NULL")
        else:
            scope.append("a.guild_id = :guild_id")
            params["guild_id"] = guild_id
        if channel_id is not None:
            scope.append("a.channel_id = :channel_id")
            params["channel_id"] = channel_id
        if user_id is not None:
            scope.append("a.author_id = :user_id")
            params["user_id"] = user_id
        where = " AND ".join(scope)
        if self._db.dialect.name == "postgresql":
            params["terms"] = " ".join(terms)
            # plainto_tsquery ANDs the words; any shared word should match, so OR them.
            sql = (
                "SELECT m.id FROM (SELECT a.id, a.text FROM message_archive AS a, q "
                f"WHERE to_tsvector('simple', a.text) @@ q.query AND a.deleted IS false "
                f"AND {where} ORDER BY a.id DESC LIMIT :recent) AS m, q "
                "ORDER BY ts_rank_cd(to_tsvector('simple', m.text), q.query) DESC, m.id DESC "
                "LIMIT :limit"
            )
            sql = (
                "WITH q AS (SELECT CAST(replace(CAST(plainto_tsquery('simple', :terms) AS text), "
                "' & ', ' | ') AS tsquery) AS query) " + sql
            )
        else:
            params["match"] = " OR ".join(f'"{term}"' for term in terms)
            sql = (
                "SELECT id FROM (SELECT a.id AS id, bm25("
                f"{FTS_TABLE}) AS score FROM {FTS_TABLE} AS f "
                "JOIN message_archive AS a ON a.id = f.rowid "
                f"WHERE {FTS_TABLE} MATCH :match AND a.deleted = 0 AND {where} "
                "ORDER BY f.rowid DESC LIMIT :recent) ORDER BY score, id DESC LIMIT :limit"
            )
        params["recent"] = RECENT_MATCHES
        async with self._db.connect() as conn:
            return [int(row[0]) for row in await conn.execute(text(sql), params)]

    async def by_ids(self, agent_id: str, ids: Collection[int]) -> dict[int, ArchivedMessage]:
        """The agent's archived messages with these ids (deleted ones included, marked)."""
        if not ids:
            return {}
        # By primary key alone: with agent_id in the WHERE clause SQLite walks the agent's
        # index instead (all of its archive); the agent is checked on the rows.
        query = select(*_ROW_COLUMNS).where(
            message_archive.c.id.in_(bindparam("ids", expanding=True))
        )
        async with self._db.connect() as conn:
            rows = await conn.execute(query, {"ids": sorted(int(i) for i in ids)})
            return {int(row.id): _archived(row) for row in rows if row.agent_id == agent_id}

    async def after(self, agent_id: str, after_id: int, limit: int) -> list[ArchivedMessage]:
        """The agent's archived messages with ids above ``after_id``, oldest id first."""
        query = (
            select(*_ROW_COLUMNS)
            .where(message_archive.c.agent_id == agent_id, message_archive.c.id > after_id)
            .order_by(message_archive.c.id)
            .limit(limit)
        )
        async with self._db.connect() as conn:
            return [_archived(row) for row in await conn.execute(query)]

    async def id_of(self, agent_id: str, channel_id: str, message_id: str) -> int | None:
        """The archive row id of a platform message, if it is archived."""
        async with self._db.connect() as conn:
            found = await _ids(
                conn,
                message_archive.c.agent_id == agent_id,
                message_archive.c.channel_id == channel_id,
                message_archive.c.message_id == message_id,
            )
        return found[0] if found else None

    async def ids_by_author(self, agent_id: str, author_id: str) -> list[int]:
        async with self._db.connect() as conn:
            return await _ids(
                conn,
                message_archive.c.agent_id == agent_id,
                message_archive.c.author_id == author_id,
            )

    async def count_after(self, agent_id: str, after_id: int) -> int:
        async with self._db.connect() as conn:
            found = await conn.scalar(
                select(func.count())
                .select_from(message_archive)
                .where(message_archive.c.agent_id == agent_id, message_archive.c.id > after_id)
            )
        return int(found or 0)


async def _ids(conn: AsyncConnection, *condition: Any) -> list[int]:
    rows = await conn.execute(select(message_archive.c.id).where(*condition))
    return [int(row[0]) for row in rows]
