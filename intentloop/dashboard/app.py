"""The dashboard's web app (FastAPI) and the server that runs it (uvicorn) for `intentloop dashboard`.

FastAPI because the inference workers already serve with it: one web stack in the project. Four
routes: ``/`` (the page), ``/api/overview`` (the same data as JSON), ``/metrics`` (Prometheus text,
what ``deploy/grafana/`` charts) and ``/healthz``; with a review backend, the review page's routes
under ``/review`` too (``review``: token login, one query at a time, keyboard first). The
generated API docs are switched off: they load their script from a CDN and the dashboard must work
with no internet access.

Every route reads a fresh overview (``build_overview``) on a worker thread, since the queries
block; a failure answers 500 with its reason rather than stopping the server.
"""

import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from intentloop.dashboard.page import render_page
from intentloop.dashboard.review import ReviewBackend, add_review_routes
from intentloop.dashboard.review_auth import ReviewAuth
from intentloop.dashboard.review_backend import PostgresReviewBackend
from intentloop.review.settings import ReviewSettings
from store.db import Database
from store.registry import RedisRegistry
from streams.drift.metrics import CONTENT_TYPE as PROM_CONTENT_TYPE
from streams.drift.metrics import render as render_metrics
from streams.drift.overview import build_overview
from streams.drift.settings import DriftSettings

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 10.0
_SHUTDOWN_TIMEOUT_S = 5.0

Overview = Callable[[], dict[str, Any]]


def create_app(
    source: Overview,
    *,
    refresh_s: int = 30,
    review_backend: ReviewBackend | None = None,
    review_auth: ReviewAuth | None = None,
) -> FastAPI:
    """The dashboard's routes over ``source``, which returns a fresh overview dict per call; the
    review page's too when ``review_backend`` is given (``review_auth`` None: a random secret)."""
    app = FastAPI(title="intentloop dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    if review_backend is not None:
        add_review_routes(app, review_backend, review_auth or ReviewAuth())

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(source(), refresh_s=refresh_s))

    @app.get("/api/overview")
    def overview() -> Response:
        # json.dumps with default=str, as before: datetimes and decimals as their str()
        return Response(json.dumps(source(), default=str), media_type="application/json")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render_metrics(source), media_type=PROM_CONTENT_TYPE)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.exception_handler(HTTPException)
    async def plain_error(request: Request, exc: HTTPException) -> PlainTextResponse:
        return PlainTextResponse(str(exc.detail).lower(), status_code=exc.status_code)

    app.middleware("http")(_no_store_and_errors)
    return app


async def _no_store_and_errors(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Every answer uncached (it is live data); an exception answers 500 with its reason."""
    try:
        response = await call_next(request)
    except Exception as exc:  # one bad scrape must not kill the server; say why
        log.exception("dashboard request %s failed", request.url.path)
        response = PlainTextResponse(f"{type(exc).__name__}: {exc}", status_code=500)
    response.headers["Cache-Control"] = "no-store"
    return response


def review_auth_from(review: ReviewSettings) -> ReviewAuth:
    """The review page's signer from its settings (no secret set: a random one per process)."""
    secret = review.secret.get_secret_value().encode() if review.secret else None
    return ReviewAuth(secret=secret, max_seconds=review.max_seconds)


class DashboardServer:
    """The dashboard under uvicorn: ``serve_forever`` for the CLI, ``start``/``stop`` for tests.

    The socket is bound in the constructor, so ``port`` is known (``port=0`` picks a free one)
    and a bind error surfaces before anything is printed. The review page is always served, from
    Postgres, with ``review`` (default settings when None) and the closed taxonomy
    ``category_labels`` (empty: every label the catalog votes for).
    """

    def __init__(
        self,
        db: Database,
        registry: RedisRegistry | None,
        settings: DriftSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8090,
        refresh_s: int = 30,
        review: ReviewSettings | None = None,
        category_labels: Sequence[str] = (),
    ) -> None:
        review = review or ReviewSettings()
        app = create_app(
            lambda: build_overview(db, registry, settings),
            refresh_s=refresh_s,
            review_backend=PostgresReviewBackend(db, review, category_labels),
            review_auth=review_auth_from(review),
        )
        self._socket = socket.create_server((host, port))
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> "DashboardServer":
        """Serve on a background thread; returns once uvicorn accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve until stopped (Ctrl-C in the foreground: uvicorn shuts down, then re-raises it)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_SHUTDOWN_TIMEOUT_S)
        self._socket.close()
