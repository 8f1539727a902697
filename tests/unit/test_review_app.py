"""The review page's routes over a fake backend (no Postgres, no server): token login, sessions,
the CSRF and origin checks, form parsing, escaping of everything from the data, the security
headers, and exactly what each decision hands to storage (seconds measured by the server)."""

import re
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from intentloop.dashboard import create_app
from intentloop.dashboard.review import SECURITY_HEADERS, ReviewItem
from intentloop.dashboard.review_auth import (
    ReviewAuth,
    ReviewRequestError,
    bearer_token,
    check_same_origin,
    hash_token,
    parse_form,
)

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
EVIL = "<script>alert(1)</script> \"'&<b>"
BASE = "http://testserver"


def _item(item_id: int, query: str, suggestion: str | None = "garden") -> ReviewItem:
    return ReviewItem(
        id=item_id,
        dimension="category",
        query=query,
        searches=14,
        suggestion=suggestion,
        probabilities=[("garden", 0.52), ("kitchen", 0.31), ("fashion", 0.17)],
        weak={
            "label": "kitchen",
            "confidence": 0.6,
            "distribution": {"kitchen": 0.6, "garden": 0.4},
            "abstained": True,
            "reason": "contradictory",
            "evidence": 2.0,
        },
        evidence=[{"type": "click", "product_id": "p1", "title": "Acme hose", "label": "garden", "n": 3}],
        explanation={"method": "occlusion", "label": "garden", "words": [["acme", 0.4], ["hose", -0.1]]},
        reasons={"why": ["champion unsure: margin 0.21"], "score": 1.25},
    )


@dataclass
class FakeBackend:
    """Storage as the routes see it, recording every write."""

    items: list[ReviewItem]
    tokens: dict[str, str] = field(
        default_factory=lambda: {hash_token(ALICE): "alice", hash_token(BOB): "bob"}
    )
    calls: list[tuple] = field(default_factory=list)
    done: list[tuple[str, int]] = field(default_factory=list)
    double: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def reviewer_for(self, token_sha256: str) -> str | None:
        return self.tokens.get(token_sha256)

    def next_item(self, reviewer: str) -> ReviewItem | None:
        return next((i for i in self.items if (reviewer, i.id) not in self.done), None)

    def labels(self, dimension: str) -> set[str]:
        return {"garden", "kitchen", "fashion", "pets"}

    def decide(self, item_id: int, reviewer: str, action: str, label: str | None, seconds: float) -> None:
        self.calls.append(("decide", item_id, reviewer, action, label, seconds))
        self.done.append((reviewer, item_id))

    def undo_last(self, reviewer: str) -> bool:
        self.calls.append(("undo", reviewer))
        mine = [d for d in self.done if d[0] == reviewer]
        if mine:
            self.done.remove(mine[-1])
        return bool(mine)

    def progress(self) -> dict[str, int]:
        return {"queued": len(self.items), "reviewed": len(self.done), "skipped": 0, "pending": 1}

    def double_reviewed(self) -> list[tuple[str, dict[str, str]]]:
        return self.double


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend([_item(1, "acme garden hose"), _item(2, "pans"), _item(3, "no idea", suggestion=None)])


@pytest.fixture
def client(backend: FakeBackend, clock: Clock) -> TestClient:
    auth = ReviewAuth(secret=b"s" * 32, max_seconds=600, clock=clock)
    app = create_app(lambda: {}, review_backend=backend, review_auth=auth)
    return TestClient(app, base_url=BASE, follow_redirects=False)


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


def login(client: TestClient, token: str = ALICE) -> None:
    form = client.get("/review/login").text
    r = client.post("/review/login", data={"csrf": _hidden(form, "csrf"), "token": token})
    assert r.status_code == 303 and r.headers["location"] == "/review"


def page_fields(client: TestClient) -> dict[str, str]:
    html = client.get("/review").text
    return {name: _hidden(html, name) for name in ("csrf", "item_id", "shown")}


# --- login and sessions -------------------------------------------------------------------------


def test_no_session_sees_the_login_page_and_posts_are_401(client: TestClient) -> None:
    r = client.get("/review")
    assert r.status_code == 303 and r.headers["location"] == "/review/login"
    login_page = client.get("/review/login")
    assert login_page.status_code == 200 and 'name="token"' in login_page.text
    for path in ("/review/decide", "/review/undo", "/review/logout"):
        assert client.post(path, data={"csrf": "x"}).status_code == 401, path


@pytest.mark.parametrize("token", ["wrong", "", "  "])
def test_a_wrong_token_is_refused(client: TestClient, backend: FakeBackend, token: str) -> None:
    form = client.get("/review/login").text
    r = client.post("/review/login", data={"csrf": _hidden(form, "csrf"), "token": token})
    assert r.status_code == 401
    assert "unknown or revoked token" in r.text
    assert "intentloop_review=" not in r.headers.get("set-cookie", "")
    assert client.get("/review").status_code == 303


def test_login_needs_its_csrf_nonce_and_our_origin(client: TestClient) -> None:
    form = client.get("/review/login").text
    assert client.post("/review/login", data={"csrf": "forged", "token": ALICE}).status_code == 403
    cross = client.post(
        "/review/login",
        data={"csrf": _hidden(form, "csrf"), "token": ALICE},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert client.get("/review").status_code == 303  # still logged out


def test_login_sets_a_strict_http_only_session(client: TestClient, backend: FakeBackend) -> None:
    form = client.get("/review/login").text
    r = client.post("/review/login", data={"csrf": _hidden(form, "csrf"), "token": f" {ALICE}\n"})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("intentloop_review="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert ALICE not in cookie  # the token itself is never stored in the browser
    page = client.get("/review")
    assert page.status_code == 200 and "reviewer <b>alice</b>" in page.text


def test_bearer_token(client: TestClient, backend: FakeBackend, clock: Clock) -> None:
    assert client.get("/review", headers={"Authorization": "Bearer nope"}).status_code == 401
    page = client.get("/review", headers={"Authorization": f"Bearer {ALICE}"})
    assert page.status_code == 200 and "acme garden hose" in page.text
    # a bearer token is never sent by a browser on its own: no CSRF token needed
    shown = _hidden(page.text, "shown")
    clock.now += 4
    r = client.post(
        "/review/decide",
        data={"item_id": "1", "shown": shown, "action": "skip"},
        headers={"Authorization": f"Bearer {ALICE}"},
    )
    assert r.status_code == 303
    assert backend.calls == [("decide", 1, "alice", "skip", None, 4.0)]


def test_sessions_expire_and_die_with_the_token(
    client: TestClient, backend: FakeBackend, clock: Clock
) -> None:
    login(client)
    assert client.get("/review").status_code == 200
    clock.now += 12 * 3600 + 1
    assert client.get("/review").status_code == 303
    clock.now -= 12 * 3600 + 1
    del backend.tokens[hash_token(ALICE)]  # revoked (or rotated)
    assert client.get("/review").status_code == 303


def test_logout(client: TestClient) -> None:
    login(client)
    csrf = page_fields(client)["csrf"]
    r = client.post("/review/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/review/login"
    assert client.get("/review").status_code == 303


# --- CSRF, origin, content type ------------------------------------------------------------------


def test_decide_without_csrf_is_403(client: TestClient, backend: FakeBackend) -> None:
    login(client)
    f = page_fields(client)
    r = client.post("/review/decide", data={"item_id": f["item_id"], "shown": f["shown"], "label": "garden"})
    assert r.status_code == 403
    assert client.post("/review/undo", data={"csrf": ""}).status_code == 403
    assert backend.calls == []


def test_the_csrf_token_of_another_session_is_403(client: TestClient, backend: FakeBackend) -> None:
    other = TestClient(client.app, base_url=BASE, follow_redirects=False)
    login(other)  # the same reviewer, another browser: another session
    theirs = page_fields(other)["csrf"]
    login(client)
    mine = page_fields(client)
    assert theirs != mine["csrf"]
    data = {"csrf": theirs, "item_id": mine["item_id"], "shown": mine["shown"], "label": "garden"}
    assert client.post("/review/decide", data=data).status_code == 403
    assert backend.calls == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Referer": "http://evil.example/review"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_posts_are_403_even_with_the_right_token(
    client: TestClient, backend: FakeBackend, headers: dict[str, str]
) -> None:
    login(client)
    f = page_fields(client)
    r = client.post("/review/decide", data={**f, "label": "garden"}, headers=headers)
    assert r.status_code == 403
    assert backend.calls == []


def test_same_origin_headers_pass(client: TestClient, backend: FakeBackend) -> None:
    login(client)
    f = page_fields(client)
    headers = {"Origin": BASE, "Referer": f"{BASE}/review", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/review/decide", data={**f, "label": "garden"}, headers=headers).status_code == 303
    assert len(backend.calls) == 1


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"label": "garden"}', "application/json"),
        (b"label=garden", "text/plain"),
        (
            b'--x\r\nContent-Disposition: form-data; name="label"\r\n\r\ngarden\r\n--x--',
            "multipart/form-data; boundary=x",
        ),
        (b"label=garden", None),
    ],
)
def test_a_body_that_is_not_a_urlencoded_form_is_415(
    client: TestClient, backend: FakeBackend, content: bytes, content_type: str | None
) -> None:
    login(client)
    page_fields(client)
    headers = {"Content-Type": content_type} if content_type else {}
    assert client.post("/review/decide", content=content, headers=headers).status_code == 415
    assert backend.calls == []


# --- the page: escaping and headers --------------------------------------------------------------


def test_everything_from_the_data_is_escaped_and_no_inline_script_exists(
    backend: FakeBackend, clock: Clock
) -> None:
    evil = ReviewItem(
        id=7,
        dimension="category",
        query=EVIL,
        searches=3,
        suggestion=EVIL,
        probabilities=[(EVIL, 0.6), ("garden", 0.4)],
        weak={
            "label": EVIL,
            "confidence": 0.5,
            "distribution": {EVIL: 1.0},
            "abstained": True,
            "reason": EVIL,
        },
        evidence=[{"type": "click", "product_id": EVIL, "title": EVIL, "label": EVIL, "n": 1}],
        explanation={"method": "occlusion", "label": EVIL, "words": [[EVIL, 0.3]]},
        reasons={"why": [EVIL]},
    )
    backend.items.insert(0, evil)
    backend.double = [(EVIL, {EVIL: "a", "bob": "a"})]
    auth = ReviewAuth(secret=b"k" * 32, clock=clock)
    app = create_app(lambda: {}, review_backend=backend, review_auth=auth)
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    login(client)
    html = client.get("/review").text
    assert "<script>alert(1)" not in html and '<b>"' not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &#34;&#39;&amp;&lt;b&gt;"
    assert html.count(escaped) >= 10  # query, labels, weak, evidence, words, reasons, agreement
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts == [""]  # one script element, with a src and no inline code
    assert '<script src="/review/review.js" defer></script>' in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handler either


@pytest.mark.parametrize("path", ["/review/login", "/review", "/review/review.js"])
def test_security_headers_on_review_routes(client: TestClient, path: str) -> None:
    login(client)
    r = client.get(path)
    assert r.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    csp = r.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"


def test_refusals_carry_the_headers_too_and_the_dashboard_keeps_its_own(client: TestClient) -> None:
    r = client.post("/review/decide", data={"csrf": "x"})
    assert r.status_code == 401 and r.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_the_script_is_served_as_javascript(client: TestClient) -> None:
    r = client.get("/review/review.js")
    assert r.headers["content-type"].startswith("text/javascript")
    assert "requestSubmit" in r.text and "keydown" in r.text


def test_the_page_shows_the_item(client: TestClient, backend: FakeBackend) -> None:
    backend.double = [
        ("q1", {"alice": "garden", "bob": "garden"}),
        ("q2", {"alice": "garden", "bob": "pets"}),
    ]
    login(client)
    html = client.get("/review").text
    for text in (
        "acme garden hose",
        '<kbd>1</kbd> garden <span class="prob">52%</span>',
        "<kbd>2</kbd> kitchen",
        "accept the suggestion: <b>garden</b>",
        "contradictory",
        "Acme hose",
        "champion unsure: margin 0.21",
        "14 searches",
        '<option value="pets">pets</option>',
        "alice · bob",
        "50%",
    ):
        assert text in html, text
    assert html.count('class="word"') == 2


def test_an_empty_queue(client: TestClient, backend: FakeBackend) -> None:
    backend.items.clear()
    login(client)
    html = client.get("/review").text
    assert "Your queue is empty" in html and 'id="decide"' not in html and 'id="undo"' in html


# --- decisions --------------------------------------------------------------------------------


def _decide(client: TestClient, **fields: str) -> tuple[int, str]:
    f = page_fields(client)
    r = client.post("/review/decide", data={**f, **fields})
    return r.status_code, r.headers.get("location", "")


@pytest.mark.parametrize(
    ("fields", "action", "label"),
    [
        ({"label": "kitchen"}, "label", "kitchen"),  # key 2
        ({"label": "pets"}, "label", "pets"),  # the list of other labels
        ({"action": "accept"}, "accept", None),  # Enter
        ({"action": "skip"}, "skip", None),  # S
    ],
)
def test_a_decision_reaches_the_backend_exactly(
    client: TestClient,
    backend: FakeBackend,
    clock: Clock,
    fields: dict[str, str],
    action: str,
    label: str | None,
) -> None:
    login(client)
    f = page_fields(client)
    clock.now += 7.25
    r = client.post("/review/decide", data={**f, **fields})
    assert (r.status_code, r.headers["location"]) == (303, "/review")
    assert backend.calls == [("decide", 1, "alice", action, label, 7.25)]


def test_seconds_are_clamped_to_max_seconds(client: TestClient, backend: FakeBackend, clock: Clock) -> None:
    login(client)
    f = page_fields(client)
    clock.now += 10_000
    client.post("/review/decide", data={**f, "label": "garden"})
    assert backend.calls == [("decide", 1, "alice", "label", "garden", 600.0)]


def test_undo_reaches_the_backend(client: TestClient, backend: FakeBackend) -> None:
    login(client)
    assert _decide(client, label="garden") == (303, "/review")
    csrf = page_fields(client)["csrf"]
    r = client.post("/review/undo", data={"csrf": csrf})
    assert (r.status_code, r.headers["location"]) == (303, "/review?notice=undone")
    assert backend.calls[-1] == ("undo", "alice")
    page = client.get("/review?notice=undone").text
    assert "Undone" in page and "acme garden hose" in page  # the undone item is back
    r = client.post("/review/undo", data={"csrf": csrf})
    assert r.headers["location"] == "/review?notice=nothing"


def test_refused_decisions_store_nothing(client: TestClient, backend: FakeBackend, clock: Clock) -> None:
    login(client)
    assert _decide(client, label="not-a-label")[0] == 400
    assert _decide(client, label="garden", action="delete")[0] == 400
    assert _decide(client, label="garden", shown="1800000000000.forged")[0] == 400
    assert _decide(client, label="garden", item_id="x")[0] == 400
    other = page_fields(client)
    clock.now += 1
    # a stamp is for one item and one reviewer: item 2's id with item 1's stamp is refused
    assert client.post("/review/decide", data={**other, "item_id": "2", "label": "garden"}).status_code == 400
    assert backend.calls == []


def test_a_stale_item_is_not_decided_twice(client: TestClient, backend: FakeBackend) -> None:
    login(client)
    f = page_fields(client)
    assert client.post("/review/decide", data={**f, "label": "garden"}).status_code == 303
    again = client.post("/review/decide", data={**f, "label": "kitchen"})  # a double press
    assert (again.status_code, again.headers["location"]) == (303, "/review?notice=stale")
    assert backend.calls == [("decide", 1, "alice", "label", "garden", 0.0)]
    assert "already decided" in client.get("/review?notice=stale").text


def test_accept_needs_a_suggestion(client: TestClient, backend: FakeBackend) -> None:
    backend.items[:] = [_item(3, "no idea", suggestion=None)]
    login(client)
    assert 'id="accept" disabled' in client.get("/review").text
    assert _decide(client, action="accept")[0] == 400
    assert backend.calls == []


# --- the pieces of review_auth --------------------------------------------------------------------


def test_tokens_hash_and_cookies_cannot_be_forged(clock: Clock) -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    auth = ReviewAuth(secret=b"x" * 32, clock=clock)
    cookie = auth.session_cookie(hash_token("abc"))
    assert auth.session_token_hash(cookie) == hash_token("abc")
    forged = cookie.replace(hash_token("abc"), hash_token("other"))
    assert auth.session_token_hash(forged) is None
    assert ReviewAuth(secret=b"y" * 32, clock=clock).session_token_hash(cookie) is None
    assert auth.session_token_hash("v1.a.b") is None and auth.session_token_hash(None) is None
    assert ReviewAuth().session_token_hash(ReviewAuth().session_cookie("h")) is None  # random secrets
    with pytest.raises(ReviewRequestError):
        auth.check_csrf(cookie, auth.csrf_token(auth.session_cookie(hash_token("abc"))))
    auth.check_csrf(cookie, auth.csrf_token(cookie))


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None and bearer_token(None) is None


def test_origin_check_without_headers_passes() -> None:
    check_same_origin({"host": "h:8090"}, "http")
    check_same_origin({"host": "h:8090", "origin": "http://h:8090", "sec-fetch-site": "same-origin"}, "http")
    with pytest.raises(ReviewRequestError):
        check_same_origin({"host": "h:8090", "origin": "http://h:8091"}, "http")


def test_form_parsing() -> None:
    form = "application/x-www-form-urlencoded; charset=utf-8"
    assert parse_form(form, b"a=1&b=%3Cx%3E&c=&a=2") == {"a": "2", "b": "<x>", "c": ""}
    assert parse_form(form, b"label=caf%C3%A9") == {"label": "café"}
    for body in (b"x=%ff", "x=é".encode()):
        with pytest.raises(ReviewRequestError) as bad:
            parse_form(form, body)
        assert bad.value.status == 400
    with pytest.raises(ReviewRequestError) as big:
        parse_form(form, b"x=" + b"a" * 20_000)
    assert big.value.status == 413
    with pytest.raises(ReviewRequestError) as many:
        parse_form(form, "&".join(f"f{i}=1" for i in range(50)).encode())
    assert many.value.status == 400
