"""prediction counts keyed by label dimension

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:50:00.000000

Workers of a multi-head version count what every head answered, so the drift job can compare the
served intent types window by window as well. Every existing row is a ``category`` row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "prediction_counts",
        sa.Column("dimension", sa.String(length=32), nullable=False, server_default="category"),
    )
    op.drop_constraint(op.f("pk_prediction_counts"), "prediction_counts", type_="primary")
    op.create_primary_key(
        op.f("pk_prediction_counts"), "prediction_counts", ["window_start", "version", "dimension", "label"]
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM prediction_counts WHERE dimension <> 'category'"))
    op.drop_constraint(op.f("pk_prediction_counts"), "prediction_counts", type_="primary")
    op.create_primary_key(
        op.f("pk_prediction_counts"), "prediction_counts", ["window_start", "version", "label"]
    )
    op.drop_column("prediction_counts", "dimension")
