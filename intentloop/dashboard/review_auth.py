"""Who is reviewing, and whether a form post really came from our own page: the review page's
security, with the standard library only (``hmac``, ``hashlib``, ``secrets``, ``urllib.parse``).

No new dependency: the CSRF packages on PyPI are not installed, ``itsdangerous`` comes only
transitively, and ``python-multipart`` (what FastAPI's ``Form`` needs) is absent, so the few lines
each would save are written here and unit-tested.

- **Tokens.** A reviewer holds a random token (``intentloop review token add``); the database keeps
  only its SHA-256 (:func:`hash_token`), so a leaked table logs nobody in.
- **Session.** After login the browser holds a cookie ``v1.<token hash>.<issued>.<nonce>.<mac>``,
  HMAC-signed with the review secret. It carries the token's hash rather than the reviewer's name so
  that every request looks the reviewer up again: revoking or rotating a token ends its sessions at
  once. The nonce makes every login a different session (and a different CSRF token).
- **CSRF.** A synchronizer token, ``HMAC(secret, "csrf|" + session cookie)``, sits in every form and is
  compared in constant time; on top, a post whose ``Origin``/``Referer`` is another origin, or whose
  ``Sec-Fetch-Site`` says cross-site, is refused whatever it carries. The login form, before any
  session exists, uses a double-submit nonce (cookie = hidden field).
- **Seconds spent** are measured by the server: the page carries a signed ``shown`` stamp (when the
  item was rendered, for which item and reviewer), so a client can neither forge nor inflate them.
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

SESSION_COOKIE = "intentloop_review"
LOGIN_COOKIE = "intentloop_review_login"
COOKIE_PATH = "/review"
SESSION_MAX_AGE_S = 12 * 3600  # one working day; a new login is a token paste away
FORM_MAX_BYTES = 16 * 1024  # the largest form is a handful of short fields
_FORM_MAX_FIELDS = 20
_VERSION = "v1"
FORM_TYPE = "application/x-www-form-urlencoded"


class ReviewRequestError(Exception):
    """A request the review routes refuse; ``status`` is the HTTP answer, the message its body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def hash_token(token: str) -> str:
    """SHA-256 hex of a reviewer token: what ``reviewers.token_sha256`` stores. A plain hash (no
    salt, no stretching) is enough: tokens are 256 random bits, not passwords."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scripts and tests), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class ReviewAuth:
    """Signs and checks sessions, CSRF tokens and ``shown`` stamps with one secret.

    ``secret`` None draws a random one per process: sessions then end with a restart and cannot be
    shared between replicas (set ``INTENTLOOP_REVIEW__SECRET`` for that). ``max_seconds`` caps the
    seconds one decision may count (a reviewer who walked away is not a slow item).
    """

    secret: bytes | None = field(default=None, repr=False)
    max_seconds: float = 600.0
    session_max_age_s: float = SESSION_MAX_AGE_S
    clock: Callable[[], float] = time.time
    _key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = self.secret if self.secret else secrets.token_bytes(32)

    def _mac(self, *parts: str) -> str:
        message = "|".join(parts).encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    # --- the session -------------------------------------------------------------------------
    def session_cookie(self, token_sha256: str) -> str:
        """A new session for the reviewer whose token hashes to ``token_sha256``."""
        issued, nonce = str(int(self.clock())), _b64(secrets.token_bytes(12))
        body = f"{_VERSION}.{token_sha256}.{issued}.{nonce}"
        return f"{body}.{self._mac('session', body)}"

    def session_token_hash(self, cookie: str | None) -> str | None:
        """The token hash a genuine, unexpired session cookie carries, else None."""
        if not cookie:
            return None
        body, _, mac = cookie.rpartition(".")
        parts = body.split(".")
        if (
            len(parts) != 4
            or parts[0] != _VERSION
            or not hmac.compare_digest(mac, self._mac("session", body))
        ):
            return None
        try:
            age = self.clock() - int(parts[2])
        except ValueError:
            return None
        return parts[1] if 0 <= age <= self.session_max_age_s else None

    # --- CSRF ----------------------------------------------------------------------------------
    def csrf_token(self, cookie: str) -> str:
        """The synchronizer token of the session ``cookie``: bound to that one session."""
        return self._mac("csrf", cookie)

    def check_csrf(self, cookie: str, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(cookie)):
            raise ReviewRequestError(403, "missing or wrong csrf token: reload the page")

    @staticmethod
    def login_nonce() -> str:
        return _b64(secrets.token_bytes(16))

    @staticmethod
    def check_login_nonce(cookie: str | None, field_value: str | None) -> None:
        """Double submit before a session exists: the hidden field equals the login cookie."""
        if not cookie or not field_value or not hmac.compare_digest(cookie, field_value):
            raise ReviewRequestError(403, "missing or wrong csrf token: reload the login page")

    # --- seconds spent -------------------------------------------------------------------------
    def shown_stamp(self, item_id: int, reviewer: str) -> str:
        """When ``item_id`` was put in front of ``reviewer`` (milliseconds), signed."""
        ms = str(int(self.clock() * 1000))
        return f"{ms}.{self._mac('shown', ms, str(item_id), reviewer)}"

    def seconds_since(self, stamp: str | None, item_id: int, reviewer: str) -> float:
        """Seconds from the stamp to now, clamped to ``[0, max_seconds]``; a forged stamp or one of
        another item or reviewer is refused."""
        ms, _, mac = (stamp or "").partition(".")
        if not ms.isdigit() or not hmac.compare_digest(mac, self._mac("shown", ms, str(item_id), reviewer)):
            raise ReviewRequestError(400, "missing or wrong 'shown' stamp: reload the page")
        return min(max(self.clock() - int(ms) / 1000, 0.0), self.max_seconds)


# --- the request's origin -----------------------------------------------------------------------
def check_same_origin(headers: Mapping[str, str], scheme: str) -> None:
    """Refuse a post that a browser says comes from elsewhere.

    ``Sec-Fetch-Site`` other than same-origin/none, or an ``Origin`` (else ``Referer``) whose
    scheme://host differs from this request's, is cross-site. Neither header (curl, scripts) passes
    here: those still need the CSRF token or a bearer token, which a foreign page cannot read.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ReviewRequestError(403, f"cross-site request refused (sec-fetch-site: {site})")
    host = headers.get("host", "")
    expected = f"{scheme}://{host}".lower()
    origin = headers.get("origin")
    if origin is not None:
        if origin.lower().rstrip("/") != expected:
            raise ReviewRequestError(403, "cross-origin request refused (origin)")
        return
    referer = headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        if f"{parts.scheme}://{parts.netloc}".lower() != expected:
            raise ReviewRequestError(403, "cross-origin request refused (referer)")


# --- forms --------------------------------------------------------------------------------------
def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (a repeated field: its last value).

    Any other content type is 415 (JSON or multipart are not what our forms send, and refusing them
    also keeps a cross-site "simple" post of another type from being read as a form).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise ReviewRequestError(415, f"send {FORM_TYPE}, not {media or 'no content type'}")
    if len(body) > FORM_MAX_BYTES:
        raise ReviewRequestError(413, f"form larger than {FORM_MAX_BYTES} bytes")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            max_num_fields=_FORM_MAX_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReviewRequestError(400, f"unreadable form: {exc}") from exc
    return dict(pairs)
