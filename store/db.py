"""The Postgres wrapper: lazy engine, sessions as context managers, errors translated once."""

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.exceptions import StoreUnavailableError

# libpq connection parameters set unless the URL names them itself (``?tcp_user_timeout=...``).
# Without them a dead network path (a partition, a failed switch: packets dropped, nothing
# refused) leaves a connection waiting out TCP's retransmissions, ~15 minutes, and a new one its
# SYN retries; with them the failure surfaces as StoreUnavailableError within ~30 s, and callers
# retry on a fresh connection (the ingestion worker backs off and retries its batch).
_CLIENT_TIMEOUTS: dict[str, int] = {
    "connect_timeout": 10,  # seconds
    "keepalives": 1,
    "keepalives_idle": 10,  # seconds of silence before the first probe
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms sent data may stay unacknowledged
}
# The server's side of the same failure: a backend whose client vanished mid-transaction would
# hold its row locks until the kernel's two-hour keepalive, and the client's retry of the same
# rows would wait on them. Set per session right after connecting rather than in libpq's
# ``options`` startup parameter, which PgBouncer refuses unless told to ignore it; a URL that sets
# ``options`` itself keeps full control (nothing is SET then).
_SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
)


def connect_args(url: str) -> dict[str, object]:
    """The client timeouts above that ``url`` does not set itself: what the engine adds to each connect."""
    query = make_url(url).query
    return {k: v for k, v in _CLIENT_TIMEOUTS.items() if k not in query}


def server_keepalives(url: str) -> str | None:
    """The session settings each new connection runs, or None where the URL's ``options`` rule."""
    return None if "options" in make_url(url).query else _SERVER_KEEPALIVES


def _set_on_connect(engine: Engine, statement: str) -> None:
    """Run ``statement`` once on every new DBAPI connection, committed: a plain SET inside the
    implicit transaction would be undone by the pool's rollback on return."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        dbapi_connection.commit()


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
                self._url,
                pool_size=self._pool_size,
                pool_pre_ping=True,
                future=True,
                connect_args=connect_args(self._url),
            )
            if (statement := server_keepalives(self._url)) is not None:
                _set_on_connect(self._engine, statement)
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
