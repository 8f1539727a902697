"""The Postgres wrapper: lazy engine, sessions as context managers, errors translated once."""

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.exceptions import StoreUnavailableError


class Database:
    """Owns one SQLAlchemy engine. Connects on first use, not at construction."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self._url = url
        self._pool_size = pool_size
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(
                self._url, pool_size=self._pool_size, pool_pre_ping=True, future=True
            )
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error; outages become our error."""
        _ = self.engine
        assert self._sessions is not None
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailableError(f"Postgres is unreachable at {self._safe_url()}: {exc.orig}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailableError(f"Postgres connection lost: {exc.orig}") from exc
            raise

    def ping(self) -> None:
        with self.session() as session:
            session.execute(text("select 1"))

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dispose()
