"""label dimensions: gold labels, label distributions and labeling reports keyed by dimension

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:30:00.000000

Every existing row is a ``category`` row (the server default): a deployment that never configures
a second dimension reads and writes exactly what it did before. The primary keys of the two label
tables gain the dimension, so one query holds one label per dimension.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYED = ("gold_labels", "label_distributions")


def upgrade() -> None:
    for table in _KEYED:
        op.add_column(
            table, sa.Column("dimension", sa.String(length=32), nullable=False, server_default="category")
        )
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, ["dimension", "norm_text"])
    op.add_column(
        "labeling_reports",
        sa.Column("dimension", sa.String(length=32), nullable=False, server_default="category"),
    )


def downgrade() -> None:
    op.drop_column("labeling_reports", "dimension")
    for table in _KEYED:
        op.execute(sa.text(f"DELETE FROM {table} WHERE dimension <> 'category'"))
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, ["norm_text"])
        op.drop_column(table, "dimension")
