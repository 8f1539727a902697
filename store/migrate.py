"""Schema migrations (Alembic), driven programmatically so settings stay the one source of URLs."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from store.exceptions import StoreUnavailableError

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to call on every start (a no-op when current).

    An unreachable server is our :class:`StoreUnavailableError` (one line and exit code 3 from the
    CLI), as everywhere else the store is used, not the driver's traceback.
    """
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise StoreUnavailableError(f"Postgres is unreachable at {shown}: {exc.orig}") from exc


def current(url: str) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
