"""Alembic environment: the URL comes from ``store.migrate`` (settings), never from an ini file."""

from alembic import context
from sqlalchemy import create_engine

from store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError(
            "store.migrate sets sqlalchemy.url; run migrations through `intentloop db upgrade`"
        )
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            # Two workers starting together must not race each other through the migrations.
            connection.exec_driver_sql("select pg_advisory_xact_lock(7426001)")
            context.run_migrations()
    engine.dispose()


run_migrations_online()
