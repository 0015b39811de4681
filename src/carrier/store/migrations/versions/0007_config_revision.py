"""config revision

One counter, bumped by triggers on every write to the tables the engine reads on each turn
and rarely changes: the persona (``persona_items``, ``agents``), global state (the mood),
channel and guild settings, and guild emotes.  The engine reads the counter once per message
and reuses what it read of those tables while the counter is unchanged
(carrier.engine.config_cache), so an edit made by any process - the CLI, the HTTP API, a
second bot, plain SQL - still shapes the very next reply.

* SQLite: row triggers (one per table and operation).
* PostgreSQL: one plpgsql function, run by a statement trigger per table (TRUNCATE too).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUMP = "UPDATE config_revision SET revision = revision + 1"
_OPERATIONS = ("insert", "update", "delete")
WATCHED_TABLES = (
    "agents",
    "persona_items",
    "global_state",
    "guild_settings",
    "channel_settings",
    "guild_emotes",
)


def upgrade() -> None:
    op.create_table(
        "config_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_revision")),
    )
    op.execute("INSERT INTO config_revision (id, revision) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION carrier_bump_config_revision() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_config_revision "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION carrier_bump_config_revision()"
            )
        return
    for table in WATCHED_TABLES:
        for operation in _OPERATIONS:
            op.execute(
                f"CREATE TRIGGER {table}_config_revision_{operation} "
                f"AFTER {operation.upper()} ON {table} BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_config_revision ON {table}")
        op.execute("DROP FUNCTION IF EXISTS carrier_bump_config_revision()")
    else:
        for table in WATCHED_TABLES:
            for operation in _OPERATIONS:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_config_revision_{operation}")
    op.drop_table("config_revision")
