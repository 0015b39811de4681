"""archive full-text search

Lexical search over ``message_archive.text`` for carrier.memory.archive (hybrid lexical +
vector search of archived messages).  The objects are dialect-specific and live outside the
shared metadata (carrier.store.archive names them, and the migration environment leaves them
out of autogenerate's comparison):

* SQLite: an FTS5 table with external content (``message_archive_fts``; the text is not
  stored twice) kept in step by three triggers.  The ``unicode61`` tokenizer with diacritics
  removed matches "cafe" to "café" and works for any script that separates words by spaces.
  Note: a later migration that rebuilds ``message_archive`` with ``batch_alter_table`` on
  SQLite drops these triggers with the old table; it must create them again (``_triggers``).
* PostgreSQL: a GIN index over ``to_tsvector('simple', text)``; the ``simple`` configuration
  neither stems nor drops stop words, so every language is matched word by word.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 13:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = (
    "CREATE TRIGGER message_archive_fts_insert AFTER INSERT ON message_archive BEGIN "
    "INSERT INTO message_archive_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER message_archive_fts_delete AFTER DELETE ON message_archive BEGIN "
    "INSERT INTO message_archive_fts(message_archive_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER message_archive_fts_update AFTER UPDATE OF text ON message_archive BEGIN "
    "INSERT INTO message_archive_fts(message_archive_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); "
    "INSERT INTO message_archive_fts(rowid, text) VALUES (new.id, new.text); END",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_message_archive_fts ON message_archive "
            "USING gin (to_tsvector('simple', text))"
        )
        return
    op.execute(
        "CREATE VIRTUAL TABLE message_archive_fts USING fts5(text, content='message_archive', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    for trigger in _TRIGGERS:
        op.execute(trigger)
    # What was archived before this migration.
    op.execute("INSERT INTO message_archive_fts(message_archive_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_message_archive_fts")
        return
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS message_archive_fts_{name}")
    op.execute("DROP TABLE IF EXISTS message_archive_fts")
