"""``intentloop db upgrade``: the schema, for operators who migrate before starting anything.

Every command that touches tables migrates by itself (``Runtime.ready_db``); this one only says
where the database ended up.
"""

import click

from intentloop.cli.common import runtime


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head (idempotent)."""
    from store.migrate import current

    rt = runtime()
    rt.ready_db()
    click.echo(f"database at revision {current(rt.endpoints.postgres_url)}")
