"""The global view per label in Postgres: which words push recent traffic toward each label.

``serving.explain.global_view`` explains a sample of recent searches (drawn here by
:func:`recent_queries`) with one adapter version and sums the word attributions per label; this
module only moves that summary in and out of the ``explanation_words`` and ``explanation_examples``
tables. One computation replaces every row of its (version, dimension), so readers see either the
previous view or the new one, never a mixture, and :func:`latest_global_view` is what
``intentloop explain --label`` and the dashboard show.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from store.dimensions import CATEGORY
from store.models import ExplanationExample, ExplanationWord

# Column widths of the two tables (store.models): longer labels and words are cut to fit.
_LABEL_LEN = 128
_WORD_LEN = 128
_METHOD_LEN = 16
_BATCH = 5000  # rows per INSERT statement


@dataclass(frozen=True)
class WordPush:
    """How one word pushes the sampled queries that hold it toward one label.

    ``attribution`` is the traffic-weighted mean attribution, ``total`` the sum over queries of
    attribution x searches (what ranks the words of a label), ``queries``/``searches`` the sampled
    distinct queries explained for the label that hold the word and their searches, and ``share``
    the part of the sampled queries holding the word whose explained label is this one: 1.0 means
    the word was never seen with any other label, the mark of a possible spurious cue.
    """

    label: str
    word: str
    attribution: float
    total: float
    queries: int
    searches: int
    share: float


@dataclass(frozen=True)
class ExampleExplanation:
    """One sampled query as explained: its label, probability and per-word attributions in the
    order the shopper typed the words."""

    query: str
    label: str
    probability: float
    searches: int
    words: list[tuple[str, float]]


@dataclass(frozen=True)
class GlobalView:
    """One computation of the global view: what ``version``'s ``dimension`` head believes each label
    means, over the traffic sampled at ``computed_at``, explained with ``method``."""

    version: str
    dimension: str
    method: str
    computed_at: datetime
    words: list[WordPush]
    examples: list[ExampleExplanation]


def _finite(value: float, what: str) -> float:
    """Postgres stores NaN in a DOUBLE but JSONB refuses it, and the dashboard's JSON would too:
    a non-finite number is a bug upstream, stopped here with its place named."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"explanation {what} is not a finite number: {value!r}")
    return number


def _word_rows(view: GlobalView, method: str) -> list[dict[str, Any]]:
    """Rows of ``explanation_words``; after cutting to the column widths the first of two
    colliding (label, word) keys wins."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for w in view.words:
        key = (w.label[:_LABEL_LEN], w.word[:_WORD_LEN])
        if key in rows:
            continue
        rows[key] = {
            "version": view.version,
            "dimension": view.dimension,
            "label": key[0],
            "word": key[1],
            "attribution": _finite(w.attribution, f"attribution of {w.word!r} for {w.label!r}"),
            "total": _finite(w.total, f"total of {w.word!r} for {w.label!r}"),
            "queries": int(w.queries),
            "searches": int(w.searches),
            "share": _finite(w.share, f"share of {w.word!r} for {w.label!r}"),
            "method": method,
            "computed_at": view.computed_at,
        }
    return list(rows.values())


def _example_rows(view: GlobalView, method: str) -> list[dict[str, Any]]:
    """Rows of ``explanation_examples``: one per query (the first wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for e in view.examples:
        if e.query in rows:
            continue
        rows[e.query] = {
            "version": view.version,
            "dimension": view.dimension,
            "query": e.query,
            "label": e.label[:_LABEL_LEN],
            "probability": _finite(e.probability, f"probability of {e.query!r}"),
            "searches": int(e.searches),
            "words": [[str(w), _finite(a, f"attribution of {w!r} in {e.query!r}")] for w, a in e.words],
            "method": method,
            "computed_at": view.computed_at,
        }
    return list(rows.values())


def _insert(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(model), rows[start : start + _BATCH])


def save_global_view(session: Session, view: GlobalView) -> None:
    """Replace every stored row of ``(view.version, view.dimension)`` with ``view``.

    Nothing is committed here: the caller's unit of work (``Database.session()``) commits, so
    readers see the previous view until then and a failure leaves it in place. Labels and words
    longer than their columns are cut to fit. A view with neither words nor examples only deletes.
    """
    method = view.method[:_METHOD_LEN]
    words, examples = _word_rows(view, method), _example_rows(view, method)
    for model in (ExplanationWord, ExplanationExample):
        session.execute(delete(model).where(model.version == view.version, model.dimension == view.dimension))
    _insert(session, ExplanationWord, words)
    _insert(session, ExplanationExample, examples)


def _newest(session: Session, dimension: str, version: str | None) -> tuple[str, datetime] | None:
    """(version, computed_at) of the newest stored view of ``dimension`` (and ``version``)."""
    parts = []
    for model in (ExplanationWord, ExplanationExample):
        stmt = select(model.version.label("version"), model.computed_at.label("computed_at"))
        stmt = stmt.where(model.dimension == dimension)
        if version is not None:
            stmt = stmt.where(model.version == version)
        parts.append(stmt)
    both = union_all(*parts).subquery()
    row = session.execute(
        select(both.c.version, both.c.computed_at)
        .order_by(both.c.computed_at.desc(), both.c.version)
        .limit(1)
    ).first()
    return None if row is None else (str(row[0]), row[1])


def latest_global_view(
    session: Session, dimension: str = CATEGORY, version: str | None = None
) -> GlobalView | None:
    """The newest stored global view of ``dimension`` (of ``version`` when given), or ``None``.

    Words come ordered by label, then by total push (largest first); examples by searches
    (most searched first).
    """
    newest = _newest(session, dimension, version)
    if newest is None:
        return None
    found, computed_at = newest
    w, e = ExplanationWord, ExplanationExample
    word_rows = session.scalars(
        select(w)
        .where(w.version == found, w.dimension == dimension)
        .order_by(w.label, w.total.desc(), w.word)
    ).all()
    example_rows = session.scalars(
        select(e).where(e.version == found, e.dimension == dimension).order_by(e.searches.desc(), e.query)
    ).all()
    methods = [r.method for r in word_rows] or [r.method for r in example_rows]
    return GlobalView(
        version=found,
        dimension=dimension,
        method=methods[0] if methods else "",
        computed_at=computed_at,
        words=[
            WordPush(r.label, r.word, r.attribution, r.total, r.queries, r.searches, r.share)
            for r in word_rows
        ],
        examples=[
            ExampleExplanation(r.query, r.label, r.probability, r.searches, _pairs(r.words))
            for r in example_rows
        ],
    )


def _pairs(words: Iterable[Any]) -> list[tuple[str, float]]:
    return [(str(w), float(a)) for w, a in words]


# Distinct normalised queries (``search_queries.norm_text`` holds store.taxonomy.normalise_query of
# the typed text) with their searches in the window, in an order that is random but fixed by the
# seed: every distinct query is equally likely to be kept, however often it was typed.
_RECENT_SQL = text(
    """
    SELECT norm_text, count(*) AS searches
      FROM search_queries
     WHERE ts >= :since AND norm_text <> ''
     GROUP BY norm_text
     ORDER BY md5(norm_text || :seed), norm_text
     LIMIT :limit
    """
)


def recent_queries(session: Session, *, since: datetime, limit: int, seed: int = 0) -> list[tuple[str, int]]:
    """A uniform random sample of up to ``limit`` distinct normalised queries searched since
    ``since`` (event time), each with its number of searches in that window.

    Deterministic for a given ``seed`` and data, so a global view can be recomputed on the same
    sample; sampling distinct queries, not searches, keeps the long tail (where spurious cues
    hide) in view, and the search counts let the caller weigh by traffic.
    """
    if limit <= 0:
        return []
    rows = session.execute(_RECENT_SQL, {"since": since, "limit": int(limit), "seed": f":{int(seed)}"})
    return [(str(q), int(n)) for q, n in rows]
