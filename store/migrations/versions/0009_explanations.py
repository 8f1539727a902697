"""explanations: the global view per label (word pushes and explained example queries)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:00:00.000000

One computation of the global view (a sample of recent traffic explained by one adapter version)
replaces every row of its (version, dimension): the dashboard reads the newest one per dimension.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "explanation_words",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("word", sa.String(length=128), nullable=False),
        sa.Column("attribution", sa.Float(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", "dimension", "label", "word", name=op.f("pk_explanation_words")),
    )
    op.create_table(
        "explanation_examples",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("words", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", "dimension", "query", name=op.f("pk_explanation_examples")),
    )


def downgrade() -> None:
    op.drop_table("explanation_examples")
    op.drop_table("explanation_words")
