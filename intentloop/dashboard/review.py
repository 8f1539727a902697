"""The review page: people label the queries active learning chose, one at a time, keyboard first.

Routes (added to the dashboard app by :func:`add_review_routes`):

- ``GET /review/login``, ``POST /review/login`` (token), ``POST /review/logout``;
- ``GET /review``: the reviewer's next queued query with everything that helps to judge it;
- ``POST /review/decide`` (a label, accept the suggestion, or skip) and ``POST /review/undo``;
  every post answers 303 back to ``/review`` (post/redirect/get: a reload never decides twice);
- ``GET /review/review.js``: the page's one script (keys 1-9, Enter, S, U), served by us; every
  button works without it.

Storage sits behind :class:`ReviewBackend` (``review_backend.PostgresReviewBackend`` in the product,
a fake in the unit tests). A post for any item but the reviewer's current one (a double key press, a
second tab, someone else finished it) records nothing and shows the next item with a notice.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from intentloop.dashboard.page import Word, highlight
from intentloop.dashboard.review_auth import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    ReviewAuth,
    ReviewRequestError,
    bearer_token,
    check_same_origin,
    hash_token,
    parse_form,
)
from intentloop.review.agreement import agreement

ACTIONS = ("label", "accept", "skip")
MAX_KEYS = 9  # labels 1-9 on the keyboard; the rest through the list
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_ENV = Environment(
    loader=PackageLoader("intentloop.dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class ReviewItem:
    """One queued query as the page shows it (``store.review.QueueItem``'s fields, decoupled from it)."""

    id: int
    dimension: str
    query: str
    searches: int
    suggestion: str | None
    probabilities: list[tuple[str, float]]
    weak: dict[str, Any] | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    reasons: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    strategy: str = "active"
    wanted: int = 1


class ReviewBackend(Protocol):
    """What the routes need from storage; every method is one short transaction."""

    def reviewer_for(self, token_sha256: str) -> str | None:
        """The active reviewer holding the token with this hash."""

    def next_item(self, reviewer: str) -> ReviewItem | None:
        """The reviewer's next item, or None when their queue is empty."""

    def labels(self, dimension: str) -> set[str]:
        """Every label a reviewer may give in ``dimension`` (empty: only the item's own)."""

    def decide(self, item_id: int, reviewer: str, action: str, label: str | None, seconds: float) -> None:
        """Store one decision (``label`` only for action 'label') and re-derive the gold row."""

    def undo_last(self, reviewer: str) -> bool:
        """Undo the reviewer's newest active decision; False when there is none."""

    def progress(self) -> dict[str, int]:
        """Queue counts: queued, reviewed, skipped, pending."""

    def double_reviewed(self) -> list[tuple[str, dict[str, str]]]:
        """(query, {reviewer: label}) for every query two or more reviewers labelled."""


class Choice(NamedTuple):
    """One of the model's labels as a button: its key, label and probability."""

    key: str  # the keyboard digit, "" past 9
    label: str
    probability: str


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0%}"


def _choices(item: ReviewItem) -> list[Choice]:
    return [
        Choice(str(i + 1) if i < MAX_KEYS else "", str(label), _percent(p))
        for i, (label, p) in enumerate(item.probabilities)
    ]


def _allowed(item: ReviewItem, known: set[str]) -> set[str]:
    """The labels the item may get: the dimension's set plus whatever the model or the clicks named."""
    own = {str(label) for label, _ in item.probabilities}
    weak = item.weak or {}
    own.update(str(label) for label in (weak.get("distribution") or {}))
    if item.suggestion:
        own.add(item.suggestion)
    return known | own


def _distribution(weak: dict[str, Any] | None) -> list[tuple[str, str]]:
    dist = (weak or {}).get("distribution") or {}
    return [(str(k), _percent(v)) for k, v in sorted(dist.items(), key=lambda kv: -float(kv[1]))]


def _words(item: ReviewItem) -> list[Word]:
    return highlight((item.explanation or {}).get("words") or [])


_NOTICES = {
    "stale": "That query was already decided or left the queue; here is the next one.",
    "undone": "Undone: the query is back in your queue.",
    "nothing": "Nothing to undo.",
}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """A cookie only our own pages' requests carry (SameSite=Strict, path /review) and no script reads."""
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=max_age,
    )


@dataclass
class ReviewSite:
    """The review routes' work, synchronous (storage blocks; the routes run it on a worker thread)."""

    backend: ReviewBackend
    auth: ReviewAuth

    def reviewer(self, request: Request) -> tuple[str, str | None] | None:
        """(reviewer, session cookie or None for a bearer token) of the request, if any."""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None:
            name = self.backend.reviewer_for(hash_token(token))
            if name is None:
                raise ReviewRequestError(401, "unknown or revoked token")
            return name, None
        cookie = request.cookies.get(SESSION_COOKIE)
        token_hash = self.auth.session_token_hash(cookie)
        if token_hash is None or cookie is None:
            return None
        name = self.backend.reviewer_for(token_hash)  # each request: a revoked token ends its sessions
        return None if name is None else (name, cookie)

    def checked_post(self, request: Request, body: bytes) -> tuple[str, dict[str, str]]:
        """The reviewer and form of a post that passed every check (session, origin, content type,
        CSRF token)."""
        who = self.reviewer(request)
        if who is None:
            raise ReviewRequestError(401, "log in first: /review/login")
        check_same_origin(request.headers, request.url.scheme)
        form = parse_form(request.headers.get("content-type"), body)
        name, cookie = who
        if cookie is not None:  # a browser never sends a bearer token on its own: no CSRF with one
            self.auth.check_csrf(cookie, form.get("csrf"))
        return name, form

    def login_page(self, request: Request, *, error: str | None = None, status: int = 200) -> Response:
        nonce = self.auth.login_nonce()
        html = _ENV.get_template("review_login.html").render(csrf=nonce, error=error)
        response = HTMLResponse(html, status_code=status)
        _cookie(response, request, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    def login(self, request: Request, body: bytes) -> Response:
        check_same_origin(request.headers, request.url.scheme)
        form = parse_form(request.headers.get("content-type"), body)
        self.auth.check_login_nonce(request.cookies.get(LOGIN_COOKIE), form.get("csrf"))
        token = form.get("token", "").strip()
        token_hash = hash_token(token)
        if not token or self.backend.reviewer_for(token_hash) is None:
            return self.login_page(request, error="unknown or revoked token", status=401)
        response = _see_other("/review")
        _cookie(
            response,
            request,
            SESSION_COOKIE,
            self.auth.session_cookie(token_hash),
            int(self.auth.session_max_age_s),
        )
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    def logout(self, request: Request, body: bytes) -> Response:
        self.checked_post(request, body)
        response = _see_other("/review/login")
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    def page(self, request: Request, notice: str | None) -> Response:
        who = self.reviewer(request)
        if who is None:
            return _see_other("/review/login")
        return HTMLResponse(self.render(who[0], who[1], _NOTICES.get(notice or "")))

    def render(self, name: str, cookie: str | None, notice: str | None) -> str:
        item = self.backend.next_item(name)
        return _ENV.get_template("review.html").render(
            reviewer=name,
            item=item,
            choices=_choices(item) if item else [],
            others=sorted(_allowed(item, self.backend.labels(item.dimension))) if item else [],
            weak=(item.weak or {}) if item else {},
            distribution=_distribution(item.weak) if item else [],
            words=_words(item) if item else [],
            shown=self.auth.shown_stamp(item.id, name) if item else "",
            csrf=self.auth.csrf_token(cookie) if cookie else "",
            progress=self.backend.progress(),
            agreement=agreement(self.backend.double_reviewed()),
            notice=notice,
        )

    def decide(self, request: Request, body: bytes) -> Response:
        name, form = self.checked_post(request, body)
        try:
            item_id = int(form.get("item_id", ""))
        except ValueError:
            raise ReviewRequestError(400, "item_id must be a number") from None
        seconds = self.auth.seconds_since(form.get("shown"), item_id, name)
        action = form.get("action") or "label"
        if action not in ACTIONS:
            raise ReviewRequestError(400, f"action must be one of {', '.join(ACTIONS)}")
        current = self.backend.next_item(name)
        if current is None or current.id != item_id:  # a double press, another tab, or done by others
            return _see_other("/review?notice=stale")
        label = form.get("label") if action == "label" else None
        if action == "label" and label not in _allowed(current, self.backend.labels(current.dimension)):
            raise ReviewRequestError(400, "unknown label for this query")
        if action == "accept" and not current.suggestion:
            raise ReviewRequestError(400, "this query has no suggestion to accept")
        self.backend.decide(item_id, name, action, label, seconds)
        return _see_other("/review")

    def undo(self, request: Request, body: bytes) -> Response:
        name, _form = self.checked_post(request, body)
        return _see_other("/review?notice=" + ("undone" if self.backend.undo_last(name) else "nothing"))


def add_review_routes(app: FastAPI, backend: ReviewBackend, auth: ReviewAuth) -> None:
    """The review routes on ``app``, with strict security headers on every ``/review`` answer."""
    site = ReviewSite(backend, auth)
    script = resources.files("intentloop.dashboard").joinpath("templates/review.js").read_text("utf-8")

    def post(handler: Callable[[Request, bytes], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            return await run_in_threadpool(handler, request, await request.body())

        return route

    app.add_api_route("/review/login", post(site.login), methods=["POST"])
    app.add_api_route("/review/logout", post(site.logout), methods=["POST"])
    app.add_api_route("/review/decide", post(site.decide), methods=["POST"])
    app.add_api_route("/review/undo", post(site.undo), methods=["POST"])

    @app.get("/review/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return site.login_page(request)

    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request, notice: str | None = None) -> Response:
        return site.page(request, notice)

    @app.get("/review/review.js")
    def review_js() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @app.exception_handler(ReviewRequestError)
    async def refused(request: Request, exc: ReviewRequestError) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=exc.status)

    app.middleware("http")(_security_headers)


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    if request.url.path == "/review" or request.url.path.startswith("/review/"):
        response.headers.update(SECURITY_HEADERS)
    return response
