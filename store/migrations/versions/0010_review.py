"""review: reviewers, the review queue, review decisions, and a training weight on gold labels

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:00:00.000000

Gold labels loaded before this revision get weight 1.0 (what training gave every train gold row
until now). Reviewed labels are gold rows derived from ``review_decisions``; the queue keeps each
item as the reviewer saw it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("gold_labels", sa.Column("weight", sa.Float(), nullable=False, server_default="1.0"))
    op.create_table(
        "reviewers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_reviewers_token_sha256")),
    )
    op.create_table(
        "review_queue",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("selected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("norm_text", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("suggestion", sa.Text(), nullable=True),
        sa.Column("probabilities", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("weak", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("explanation", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("wanted", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.CheckConstraint("strategy IN ('active', 'random')", name=op.f("ck_review_queue_strategy")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_queue")),
        sa.UniqueConstraint("dimension", "norm_text", name="uq_review_queue_query"),
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("norm_text", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("action IN ('label', 'accept', 'skip')", name=op.f("ck_review_decisions_action")),
        sa.ForeignKeyConstraint(
            ["item_id"], ["review_queue.id"], name=op.f("fk_review_decisions_item_id_review_queue")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer"], ["reviewers.name"], name=op.f("fk_review_decisions_reviewer_reviewers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
    )
    op.create_index("ix_review_decisions_query", "review_decisions", ["dimension", "norm_text"], unique=False)
    op.create_index(
        "uq_review_decisions_active",
        "review_decisions",
        ["item_id", "reviewer"],
        unique=True,
        postgresql_where="undone_at IS NULL",
    )


def downgrade() -> None:
    op.drop_index(
        "uq_review_decisions_active", table_name="review_decisions", postgresql_where="undone_at IS NULL"
    )
    op.drop_index("ix_review_decisions_query", table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_table("review_queue")
    op.drop_table("reviewers")
    op.drop_column("gold_labels", "weight")
