"""Event (de)serialisation: compact UTF-8 JSON on the wire, JSONL files for replay and the catalog.

Decoding never raises anything but :class:`MalformedEventError`, whose ``reason`` is what the
dead-letter record carries. Timestamps are ISO-8601 with an offset; a naive timestamp is read as
UTC (so every decoded event compares with aware datetimes).

The ingestion hot path decodes with msgspec (:func:`decode_query_wire`, :func:`decode_feedback_wire`:
0.4 us a feedback event against pydantic's 2.1); the pydantic models stay the contract: whatever the
msgspec mirror does not accept outright is decoded by the model, which accepts it or gives the
dead-letter reason. The mirror is stricter than the model, never looser (``tests/unit/test_codec_wire.py``).
"""

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Literal, TypeVar, cast

import msgspec
from msgspec import Meta
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from streams.events import Feedback, FeedbackType, Product, SearchQuery
from streams.exceptions import MalformedEventError

M = TypeVar("M", bound=BaseModel)

_NUL_ESCAPE = b"\\u0000"


def encode(model: BaseModel) -> bytes:
    """Compact JSON, UTF-8; a naive ``timestamp`` is written as UTC."""
    ts = getattr(model, "timestamp", None)
    if ts is not None and ts.tzinfo is None:
        model = model.model_copy(update={"timestamp": ts.replace(tzinfo=UTC)})
    return model.model_dump_json().encode()


def decode_query(raw: bytes, *, max_bytes: int | None = None) -> SearchQuery:
    """A :class:`SearchQuery` from wire bytes, or :class:`MalformedEventError`."""
    return _decode(SearchQuery, raw, max_bytes)


def decode_feedback(raw: bytes, *, max_bytes: int | None = None) -> Feedback:
    """A :class:`Feedback` from wire bytes, or :class:`MalformedEventError`."""
    return _decode(Feedback, raw, max_bytes)


def decode_product(raw: bytes, *, max_bytes: int | None = None) -> Product:
    """A catalog :class:`Product` from JSON bytes, or :class:`MalformedEventError`."""
    return _decode(Product, raw, max_bytes)


def _decode(cls: type[M], raw: bytes, max_bytes: int | None) -> M:
    if not raw:
        raise MalformedEventError("empty_value")
    if max_bytes is not None and len(raw) > max_bytes:
        raise MalformedEventError("too_large", f"{len(raw)} bytes > {max_bytes}")
    try:
        event = cls.model_validate_json(raw)
    except ValidationError as exc:
        raise _malformed(exc, raw) from None
    return _checked(event, raw)


def _checked(event: M, raw: bytes | str) -> M:
    """Reject NUL characters (Postgres text cannot store them) and make naive timestamps UTC."""
    if (_NUL_ESCAPE in raw) if isinstance(raw, bytes) else ("\\u0000" in raw):
        for name, value in event:
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and "\x00" in v for v in values):
                raise MalformedEventError(f"schema: {name}: nul_character")
    ts = getattr(event, "timestamp", None)
    if ts is not None and ts.tzinfo is None:
        event = event.model_copy(update={"timestamp": ts.replace(tzinfo=UTC)})
    return event


def _malformed(exc: ValidationError, raw: bytes | str, skip: int = 0) -> MalformedEventError:
    err = exc.errors(include_url=False, include_input=False)[0]
    kind = err["type"]
    loc = err["loc"][skip:]
    if kind == "json_invalid":
        if isinstance(raw, bytes):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return MalformedEventError("invalid_utf8", err["msg"])
        return MalformedEventError("invalid_json", err["msg"])
    if kind == "union_tag_invalid":
        return MalformedEventError(f"unexpected_topic:{err.get('ctx', {}).get('tag', '')}")
    if kind == "model_type" and not loc:
        return MalformedEventError("not_object", err["msg"])
    field = ".".join(str(part) for part in loc) or "$"
    return MalformedEventError(f"schema: {field}: {kind}", err["msg"])


# --- The hot path: msgspec for the valid majority, the models for everything else -------------

_Id = Annotated[str, Meta(min_length=1, max_length=128)]
_Text = Annotated[str, Meta(min_length=1, max_length=512)]
# msgspec rounds a fraction of more than 6 digits to microseconds, pydantic truncates it: such
# timestamps (never written by encode()) go to the model. A false positive only costs speed.
_LONG_FRACTION = re.compile(rb"\.\d{7}")


class WireQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """:class:`~streams.events.SearchQuery` as the hot path decodes it: same fields and limits.

    ``forbid_unknown_fields``: an event with extra fields goes to the model (which ignores them),
    because msgspec skips unknown values without checking them as strictly as pydantic does.
    """

    query_id: _Id
    session_id: _Id
    timestamp: datetime
    query: _Text
    locale: Annotated[str, Meta(min_length=2, max_length=16)] = "en-US"
    shown: Annotated[list[str], Meta(max_length=200)] = []


class WireFeedback(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """:class:`~streams.events.Feedback` as the hot path decodes it: same fields and limits."""

    event_id: _Id
    query_id: _Id
    timestamp: datetime
    type: FeedbackType
    product_id: _Id
    position: Annotated[int, Meta(ge=0, le=10_000)]
    dwell_ms: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None


_QUERY_WIRE = msgspec.json.Decoder(WireQuery)
_FEEDBACK_WIRE = msgspec.json.Decoder(WireFeedback)


def decode_query_wire(raw: bytes, *, max_bytes: int | None = None) -> WireQuery:
    """What :func:`decode_query` accepts, as a :class:`WireQuery`; what it rejects, with its reason."""
    fast = _fast(_QUERY_WIRE, raw, max_bytes)
    if fast is not None:
        return fast
    q = decode_query(raw, max_bytes=max_bytes)  # the contract's verdict: raises with the reason
    return WireQuery(q.query_id, q.session_id, q.timestamp, q.query, q.locale, list(q.shown))


def decode_feedback_wire(raw: bytes, *, max_bytes: int | None = None) -> WireFeedback:
    """What :func:`decode_feedback` accepts, as a :class:`WireFeedback`; what it rejects, with its reason."""
    fast = _fast(_FEEDBACK_WIRE, raw, max_bytes)
    if fast is not None:
        return fast
    f = decode_feedback(raw, max_bytes=max_bytes)
    return WireFeedback(f.event_id, f.query_id, f.timestamp, f.type, f.product_id, f.position, f.dwell_ms)


W = TypeVar("W", WireQuery, WireFeedback)


def _fast(decoder: "msgspec.json.Decoder[W]", raw: bytes, max_bytes: int | None) -> W | None:
    """The msgspec decoding of ``raw``, or ``None``: let the model decide (and name the reason)."""
    if not raw or (max_bytes is not None and len(raw) > max_bytes):
        return None
    if (b"\\" in raw and _NUL_ESCAPE in raw) or _LONG_FRACTION.search(raw):  # a backslash is rare
        return None
    try:
        event = decoder.decode(raw)
    except msgspec.MsgspecError:
        return None
    if event.timestamp.tzinfo is None:
        return msgspec.structs.replace(event, timestamp=event.timestamp.replace(tzinfo=UTC))
    return event


# --- JSONL files ------------------------------------------------------------------------------


class _QueryLine(BaseModel):  # topic literals: streams.topics.QUERIES / FEEDBACK
    topic: Literal["search.queries"]
    key: str | None = None
    value: SearchQuery


class _FeedbackLine(BaseModel):
    topic: Literal["search.feedback"]
    key: str | None = None
    value: Feedback


_LINE = TypeAdapter(Annotated[_QueryLine | _FeedbackLine, Field(discriminator="topic")])


def _open(path: Path, mode: Literal["rb", "wb"]) -> IO[bytes]:
    """``.gz`` paths are gzip-compressed."""
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, mode))
    return path.open(mode)


def write_jsonl(path: str | Path, records: Iterable[tuple[str, str | None, BaseModel]]) -> int:
    """Write ``(topic, key, event)`` records as ``{"topic":..,"key":..,"value":{..}}`` lines.

    Returns how many were written. A ``.gz`` path is gzip-compressed.
    """
    n = 0
    with _open(Path(path), "wb") as fh:
        for topic, key, event in records:
            fh.write(
                b'{"topic":%s,"key":%s,"value":%s}\n'
                % (json.dumps(topic).encode(), json.dumps(key).encode(), encode(event))
            )
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[tuple[str, str | None, SearchQuery | Feedback]]:
    """The records :func:`write_jsonl` wrote; a bad line raises :class:`MalformedEventError` naming it."""
    with _open(Path(path), "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = _LINE.validate_json(line)
            except ValidationError as exc:
                err = _malformed(exc, line, skip=2)
                raise MalformedEventError(err.reason, f"{path}:{lineno}: {err.detail or ''}") from None
            try:
                event = _checked(rec.value, line)
            except MalformedEventError as exc:
                raise MalformedEventError(exc.reason, f"{path}:{lineno}") from None
            yield rec.topic, rec.key, event


def write_catalog_jsonl(path: str | Path, products: Iterable[Product]) -> int:
    """One :class:`Product` JSON object per line; returns the count."""
    n = 0
    with _open(Path(path), "wb") as fh:
        for product in products:
            fh.write(encode(product) + b"\n")
            n += 1
    return n


def read_catalog_jsonl(path: str | Path) -> Iterator[Product]:
    """The products of a catalog JSONL file; a bad line raises :class:`MalformedEventError` naming it."""
    with _open(Path(path), "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decode_product(line.rstrip(b"\r\n"))
            except MalformedEventError as exc:
                raise MalformedEventError(exc.reason, f"{path}:{lineno}: {exc.detail or ''}") from None
