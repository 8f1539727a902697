"""gate decisions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("candidate", sa.String(length=64), nullable=False),
        sa.Column("champion", sa.String(length=64), nullable=True),
        sa.Column("blessed", sa.Boolean(), nullable=False),
        sa.Column("reasons", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate"],
            ["adapter_versions.version"],
            name=op.f("fk_gate_decisions_candidate_adapter_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["training_runs.id"], name=op.f("fk_gate_decisions_run_id_training_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_decisions")),
    )
    op.create_index(op.f("ix_gate_decisions_candidate"), "gate_decisions", ["candidate"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gate_decisions_candidate"), table_name="gate_decisions")
    op.drop_table("gate_decisions")
