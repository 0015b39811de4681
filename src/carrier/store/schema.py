"""The relational schema, one for SQLite and PostgreSQL.

Every row that belongs to a bot carries ``agent_id`` so one database can hold several
personas.  The schema is created and changed only by the Alembic migrations in
``carrier/store/migrations``; this module is their source of truth for autogenerate and the
tables the repositories query with SQLAlchemy Core.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

ID = String(64)  # agent ids, platform ids (Discord snowflakes as text), names of keys


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime()

agents = Table(
    "agents",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("agent_id", ID, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("is_bot", Boolean, nullable=False, default=False),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
)

user_nicknames = Table(
    "user_nicknames",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("nickname", String(200), primary_key=True),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
)

persona_items = Table(
    "persona_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("position", Integer, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    CheckConstraint(
        "kind IN ('trait', 'lore', 'fact', 'bio', 'topic', 'style', 'example', 'post_example',"
        " 'nickname')",
        name="kind",
    ),
    Index("ix_persona_items_agent_kind", "agent_id", "kind", "position"),
)

memory_facts = Table(
    "memory_facts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("guild_id", ID, nullable=True),
    Column("fact", Text, nullable=False),
    Column("category", String(64), nullable=False, default="general"),
    Column("first_mentioned", TS, nullable=False),
    Column("last_mentioned", TS, nullable=False),
    Column("reference_count", Integer, nullable=False, default=1),
    Column("source_message_id", ID, nullable=True),
    Column("superseded_by", Integer, ForeignKey("memory_facts.id"), nullable=True),
    Column("embedding", LargeBinary, nullable=True),
    Column("embedding_model", String(200), nullable=True),
    Column("embedding_dim", Integer, nullable=True),
    CheckConstraint("reference_count >= 1", name="reference_count"),
    Index("ix_memory_facts_agent_user", "agent_id", "user_id", "guild_id"),
)

relationships = Table(
    "relationships",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("anger", Float, nullable=False),
    Column("rapport", Float, nullable=False),
    Column("trust", Float, nullable=False),
    Column("formality", Float, nullable=False),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("anger >= 0 AND anger <= 10", name="anger_range"),
    CheckConstraint("rapport >= 0 AND rapport <= 10", name="rapport_range"),
    CheckConstraint("trust >= 0 AND trust <= 10", name="trust_range"),
    CheckConstraint("formality >= -5 AND formality <= 5", name="formality_range"),
)

global_state = Table(
    "global_state",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", TS, nullable=False),
)


def _message_columns() -> list[Column[object]]:
    return [
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("agent_id", ID, nullable=False),
        Column("guild_id", ID, nullable=True),
        Column("channel_id", ID, nullable=False),
        Column("message_id", ID, nullable=False),
        Column("author_id", ID, nullable=False),
        Column("author_name", String(200), nullable=False),
        Column("author_is_bot", Boolean, nullable=False, default=False),
        Column("is_self", Boolean, nullable=False, default=False),
        Column("text", Text, nullable=False),
        Column("reply_to_message_id", ID, nullable=True),
        Column("reply_to_author_id", ID, nullable=True),
        Column("created_at", TS, nullable=False),
        Column("answered_reason", String(200), nullable=True),
        Column("deleted", Boolean, nullable=False, default=False),
    ]


short_term_messages = Table(
    "short_term_messages",
    metadata,
    *_message_columns(),
    UniqueConstraint("agent_id", "channel_id", "message_id", name="uq_short_term_message"),
    Index("ix_short_term_channel_time", "agent_id", "channel_id", "created_at"),
    Index("ix_short_term_agent_time", "agent_id", "created_at"),
)

message_archive = Table(
    "message_archive",
    metadata,
    *_message_columns(),
    Column("archived_at", TS, nullable=False),
    UniqueConstraint("agent_id", "channel_id", "message_id", name="uq_archive_message"),
    Index("ix_archive_channel_time", "agent_id", "channel_id", "created_at"),
    Index("ix_archive_author", "agent_id", "author_id"),
)

guild_settings = Table(
    "guild_settings",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("guild_id", ID, primary_key=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("reply_chance", Float, nullable=True),
    Column("admin_role_id", ID, nullable=True),
    Column("quiet_hours_start", Integer, nullable=True),
    Column("quiet_hours_end", Integer, nullable=True),
    Column("updated_at", TS, nullable=False),
    CheckConstraint(
        "reply_chance IS NULL OR (reply_chance >= 0 AND reply_chance <= 1)",
        name="reply_chance_range",
    ),
)

channel_settings = Table(
    "channel_settings",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("channel_id", ID, primary_key=True),
    Column("guild_id", ID, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("reply_mode", String(16), nullable=False, default="contextual"),
    Column("reply_chance", Float, nullable=True),
    Column("generation_mode", String(16), nullable=True),
    Column("updated_at", TS, nullable=False),
    CheckConstraint("reply_mode IN ('mention', 'contextual', 'chance')", name="reply_mode"),
    CheckConstraint(
        "generation_mode IS NULL OR generation_mode IN ('markov', 'llm', 'hybrid')",
        name="generation_mode",
    ),
    CheckConstraint(
        "reply_chance IS NULL OR (reply_chance >= 0 AND reply_chance <= 1)",
        name="reply_chance_range",
    ),
)

guild_emotes = Table(
    "guild_emotes",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("guild_id", ID, primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("markup", String(200), nullable=False),
)

markov_chains = Table(
    "markov_chains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, nullable=False),
    Column("guild_id", ID, nullable=False),
    Column("state_size", Integer, nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("agent_id", "guild_id", name="uq_markov_chain"),
)

markov_transitions = Table(
    "markov_transitions",
    metadata,
    Column(
        "chain_id", Integer, ForeignKey("markov_chains.id", ondelete="CASCADE"), primary_key=True
    ),
    # head is the state's first word, first in the key so "states starting with the seed
    # word" is a prefix scan of the primary key on both SQLite and PostgreSQL.
    Column("head", String(200), primary_key=True),
    Column("state", String(600), primary_key=True),
    Column("next_word", String(200), primary_key=True),
    Column("count", Integer, nullable=False),
    sqlite_with_rowid=False,
)

markov_sources = Table(
    "markov_sources",
    metadata,
    Column(
        "chain_id", Integer, ForeignKey("markov_chains.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)

job_locks = Table(
    "job_locks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", TS, nullable=False),
)

llm_usage = Table(
    "llm_usage",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("agent_id", ID, nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("succeeded", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name="tokens"),
    Index("ix_llm_usage_agent_time", "agent_id", "created_at"),
)

instagram_posts = Table(
    "instagram_posts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("agent_id", ID, nullable=False),
    # The idempotency key: one request is one post, however often it is retried.
    Column("request_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("media_kind", String(8), nullable=False),
    Column("local_path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("caption", Text, nullable=False, default=""),
    Column("remote_name", String(200), nullable=True),
    Column("media_url", Text, nullable=True),
    Column("container_id", String(64), nullable=True),
    Column("container_created_at", TS, nullable=True),
    Column("publish_requested_at", TS, nullable=True),
    Column("media_id", String(64), nullable=True),
    Column("published_at", TS, nullable=True),
    Column("not_before", TS, nullable=True),
    Column("lease_until", TS, nullable=True),
    Column("attempt_count", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("agent_id", "request_id", name="uq_instagram_post_request"),
    CheckConstraint(
        "status IN ('queued', 'publishing', 'published', 'failed', 'cancelled')", name="status"
    ),
    CheckConstraint("media_kind IN ('image', 'video')", name="media_kind"),
    CheckConstraint("status <> 'published' OR published_at IS NOT NULL", name="published_at"),
    CheckConstraint("attempt_count >= 0 AND size_bytes >= 0", name="counts"),
    Index("ix_instagram_posts_agent_status", "agent_id", "status", "created_at"),
    Index("ix_instagram_posts_agent_published", "agent_id", "published_at"),
)

instagram_attempts = Table(
    "instagram_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "post_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("instagram_posts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("stage", String(16), nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("container_id", String(64), nullable=True),
    Column("media_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS, nullable=True),
    CheckConstraint(
        "stage IN ('upload', 'container', 'processing', 'publish', 'verify')", name="stage"
    ),
    CheckConstraint(
        "outcome IS NULL OR outcome IN ('published', 'waiting', 'rate_limited', 'failed',"
        " 'unknown')",
        name="outcome",
    ),
    Index("ix_instagram_attempts_post", "post_id", "started_at"),
)


# --- vector search (carrier.memory.vectors) -------------------------------------------------

# Imported here, not at the top: besides the column type it registers ``vector`` with the
# PostgreSQL dialect, so reflection (Alembic's comparison) knows the type.
from pgvector.sqlalchemy import VECTOR  # noqa: E402

# One row per (fact, embedding model): while `carrier memory reembed` moves to a new model
# the old vectors keep answering.  On SQLite ``embedding`` holds the float32 bytes; on
# PostgreSQL it is a pgvector ``vector`` (of any dimension; migration 0004 adds an HNSW
# index per dimension over ``embedding::vector(dim)``).  ``seq`` is the
# fact_vector_versions.version of the write that stored the row, so an in-process cache can
# fetch only what changed.
fact_vectors = Table(
    "fact_vectors",
    metadata,
    Column("fact_id", Integer, primary_key=True, autoincrement=False),
    Column("model", String(200), primary_key=True),
    Column("agent_id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("guild_id", ID, nullable=True),
    Column("dim", Integer, nullable=False),
    Column("embedding", LargeBinary().with_variant(VECTOR(), "postgresql"), nullable=False),
    Column("seq", BigInteger, nullable=False, default=0),
    CheckConstraint("dim >= 1 AND dim <= 16000", name="dim"),
    Index("ix_fact_vectors_agent_model", "agent_id", "model", "dim", "user_id"),
    Index("ix_fact_vectors_agent_model_seq", "agent_id", "model", "seq"),
)

# Per (agent, model): bumped by every write of the SQLite vector index, so each search
# checks with one primary-key read whether its in-memory copy is current (another process
# may have written).  ``reset_version`` moves on deletions, which a delta cannot express.
fact_vector_versions = Table(
    "fact_vector_versions",
    metadata,
    Column("agent_id", ID, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("reset_version", BigInteger, nullable=False),
)


# --- HTTP API (carrier.api) -----------------------------------------------------------------

# API keys, only ever as a SHA-256 hash of the key (keys are long random strings, so a fast
# hash is enough; a slow password hash would add milliseconds to every request).  ``prefix``
# is the first characters of the key, shown by `carrier apikey list` so an operator can tell
# keys apart; ``scopes`` is a space-separated list (chat, admin).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=True),
    Column("revoked_at", TS, nullable=True),
    Column("last_used_at", TS, nullable=True),
    Index("ix_api_keys_agent", "agent_id", "name"),
)


# --- Discord support tickets (carrier.clients.discord) --------------------------------------

# One row per ticket: a private thread opened by a member; ``status`` open or closed.
support_tickets = Table(
    "support_tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", ID, nullable=False),
    Column("guild_id", ID, nullable=False),
    Column("channel_id", ID, nullable=False),
    Column("thread_id", ID, nullable=False),
    Column("opener_id", ID, nullable=False),
    Column("subject", String(200), nullable=False),
    Column("status", String(16), nullable=False, default="open"),
    Column("created_at", TS, nullable=False),
    Column("closed_at", TS, nullable=True),
    Column("closed_by", ID, nullable=True),
    CheckConstraint("status IN ('open', 'closed')", name="status"),
    Index("ix_support_tickets_guild", "agent_id", "guild_id", "status"),
    UniqueConstraint("thread_id", name="uq_support_tickets_thread"),
)

config_revision = Table(
    "config_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
)
"""One row, bumped by triggers (migration 0007) on every write to the tables the engine
caches between turns: agents, persona_items, global_state, guild and channel settings, guild
emotes (see carrier.engine.config_cache)."""
