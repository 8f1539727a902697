"""label evidence (searches, weight) and the declared purpose of gold labels

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00.000000

Gold labels loaded before this revision get the purpose ``eval``: from now on they are measured
against and never trained on (before, the training-bucket share of them was trained on).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "label_distributions", sa.Column("searches", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "label_distributions", sa.Column("weight", sa.Float(), nullable=False, server_default="1.0")
    )
    op.add_column(
        "gold_labels", sa.Column("purpose", sa.String(length=8), nullable=False, server_default="eval")
    )
    op.create_check_constraint(op.f("ck_gold_labels_purpose"), "gold_labels", "purpose IN ('eval', 'train')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_gold_labels_purpose"), "gold_labels", type_="check")
    op.drop_column("gold_labels", "purpose")
    op.drop_column("label_distributions", "weight")
    op.drop_column("label_distributions", "searches")
