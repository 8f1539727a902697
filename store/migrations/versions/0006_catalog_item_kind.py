"""catalog item kind: product, content or help

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00.000000

Every row loaded before this revision is a product (the server default), which is what the
catalogue contract says of an entry without a ``kind``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "catalog", sa.Column("kind", sa.String(length=16), nullable=False, server_default="product")
    )
    op.create_check_constraint(op.f("ck_catalog_kind"), "catalog", "kind IN ('product', 'content', 'help')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_catalog_kind"), "catalog", type_="check")
    op.drop_column("catalog", "kind")
