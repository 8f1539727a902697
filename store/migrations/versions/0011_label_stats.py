"""incremental label aggregation: per-query statistics per time bucket, fold state, kept searches

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 17:00:00.000000

Also indexes search_queries by session (hash) and time (BRIN): incremental aggregation reads
time buckets of searches and finds each search's next one in its session.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "label_fold_state",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("n_shards", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "n_shards", "shard", name=op.f("pk_label_fold_state")),
    )
    op.create_table(
        "label_stats",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("qhash", sa.BigInteger(), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("norm_text", sa.Text(), nullable=False),
        sa.Column("lf", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_stats")),
    )
    op.create_index("ix_label_stats_bucket", "label_stats", ["bucket", "qhash"], unique=False)
    op.create_table(
        "label_fold_records",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("qhash", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("record", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_fold_records")),
    )
    op.create_index("ix_label_fold_records_bucket", "label_fold_records", ["bucket", "qhash"], unique=False)
    # hash and BRIN, not btree: their cost on ingestion's write path (store/models.py)
    op.create_index(
        "ix_search_queries_session", "search_queries", ["session_id"], unique=False, postgresql_using="hash"
    )
    op.create_index("ix_search_queries_ts", "search_queries", ["ts"], unique=False, postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_search_queries_ts", table_name="search_queries")
    op.drop_index("ix_search_queries_session", table_name="search_queries")
    op.drop_index("ix_label_fold_records_bucket", table_name="label_fold_records")
    op.drop_table("label_fold_records")
    op.drop_index("ix_label_stats_bucket", table_name="label_stats")
    op.drop_table("label_stats")
    op.drop_table("label_fold_state")
