"""fact vectors

The vectors of long-term facts for carrier.memory.vectors.  On PostgreSQL the ``embedding``
column is a pgvector ``vector`` (the extension is created here); its HNSW indexes, one per
dimension (``embedding::vector(dim)``, partial on ``dim``), are made by the pgvector backend
when it first stores vectors of a dimension, because the dimensions depend on the embedding
models configured, and an expression index cannot be part of the metadata shared with SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 11:40:58.690935
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        available = (
            op.get_bind()
            .exec_driver_sql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
            .scalar()
        )
        if not available:
            raise RuntimeError(
                "this PostgreSQL server lacks the pgvector extension, which Carrier's vector "
                "search needs: install pgvector >= 0.8 on the server (see "
                "https://github.com/pgvector/pgvector), then run `carrier db upgrade` again"
            )
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "fact_vector_versions",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("reset_version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "model", name=op.f("pk_fact_vector_versions")),
    )
    op.create_table(
        "fact_vectors",
        sa.Column("fact_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("guild_id", sa.String(length=64), nullable=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column(
            "embedding",
            sa.LargeBinary().with_variant(VECTOR(), "postgresql"),
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("dim >= 1 AND dim <= 16000", name=op.f("ck_fact_vectors_dim")),
        sa.PrimaryKeyConstraint("fact_id", "model", name=op.f("pk_fact_vectors")),
    )
    with op.batch_alter_table("fact_vectors", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fact_vectors_agent_model", ["agent_id", "model", "dim", "user_id"], unique=False
        )
        batch_op.create_index(
            "ix_fact_vectors_agent_model_seq", ["agent_id", "model", "seq"], unique=False
        )


def downgrade() -> None:
    # Dropping the table drops its HNSW indexes too.
    with op.batch_alter_table("fact_vectors", schema=None) as batch_op:
        batch_op.drop_index("ix_fact_vectors_agent_model_seq")
        batch_op.drop_index("ix_fact_vectors_agent_model")

    op.drop_table("fact_vectors")
    op.drop_table("fact_vector_versions")
    # The vector extension stays: other objects of the database may use it.
