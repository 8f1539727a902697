"""The global view per label in Postgres: saved, replaced whole, read back newest first, and the
recent-traffic sample it is computed on."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.events import write_batch
from store.explanations import (
    ExampleExplanation,
    GlobalView,
    WordPush,
    latest_global_view,
    recent_queries,
    save_global_view,
)
from store.models import ExplanationExample, ExplanationWord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 4, 9, tzinfo=UTC)


def _view(
    version: str = "v1",
    *,
    at: datetime = T0,
    dimension: str = CATEGORY,
    words: list[WordPush] | None = None,
    examples: list[ExampleExplanation] | None = None,
) -> GlobalView:
    return GlobalView(
        version=version,
        dimension=dimension,
        method="partition",
        computed_at=at,
        words=words
        if words is not None
        else [
            WordPush("garden", "hose", 0.4, 12.0, 3, 30, 1.0),
            WordPush("garden", "acme", 0.2, 20.0, 5, 100, 1.0),
            WordPush("electronics", "charger", 0.5, 8.0, 2, 16, 0.9),
            WordPush("garden", "green", -0.1, -1.0, 1, 10, 0.5),
        ],
        examples=examples
        if examples is not None
        else [
            ExampleExplanation("garden hose", "garden", 0.92, 20, [("garden", 0.3), ("hose", 0.5)]),
            ExampleExplanation("usb charger", "electronics", 0.8, 40, [("usb", 0.1), ("charger", 0.6)]),
        ],
    )


def _count(db: Database, model: type) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_save_and_read_back_in_order(db: Database) -> None:
    with db.session() as s:
        assert latest_global_view(s) is None
        save_global_view(s, _view())
    with db.session() as s:
        view = latest_global_view(s)
    assert view is not None
    assert (view.version, view.dimension, view.method, view.computed_at) == ("v1", CATEGORY, "partition", T0)
    # by label, then by total push, largest first
    assert [(w.label, w.word) for w in view.words] == [
        ("electronics", "charger"),
        ("garden", "acme"),
        ("garden", "hose"),
        ("garden", "green"),
    ]
    assert view.words[1] == WordPush("garden", "acme", 0.2, 20.0, 5, 100, 1.0)
    assert [e.query for e in view.examples] == ["usb charger", "garden hose"]  # most searched first
    assert view.examples[1].words == [("garden", 0.3), ("hose", 0.5)]
    assert view.examples[1].probability == pytest.approx(0.92)


def test_saving_again_replaces_the_whole_view_of_that_version_and_dimension(db: Database) -> None:
    with db.session() as s:
        save_global_view(s, _view())
        save_global_view(s, _view(dimension=INTENT_TYPE, at=T0 + timedelta(minutes=1)))
        save_global_view(s, _view("v0", at=T0 - timedelta(days=1)))
    newer = _view(
        at=T0 + timedelta(hours=1),
        words=[WordPush("pets", "leash", 0.3, 3.0, 1, 10, 1.0)],
        examples=[ExampleExplanation("dog leash", "pets", 0.7, 10, [("dog", 0.2), ("leash", 0.4)])],
    )
    with db.session() as s:
        save_global_view(s, newer)
    with db.session() as s:
        view = latest_global_view(s)
        assert view is not None and view.computed_at == newer.computed_at
        assert [w.word for w in view.words] == ["leash"]
        assert [e.query for e in view.examples] == ["dog leash"]
        # the other dimension and the older version keep their rows
        typed = latest_global_view(s, INTENT_TYPE)
        assert typed is not None and typed.dimension == INTENT_TYPE and len(typed.words) == 4
        old = latest_global_view(s, version="v0")
        assert old is not None and old.version == "v0" and len(old.examples) == 2
        assert latest_global_view(s, version="v9") is None
    assert _count(db, ExplanationWord) == 1 + 4 + 4
    assert _count(db, ExplanationExample) == 1 + 2 + 2


def test_the_newest_view_wins_across_versions(db: Database) -> None:
    with db.session() as s:
        save_global_view(s, _view("v1", at=T0))
        save_global_view(s, _view("v2", at=T0 + timedelta(hours=2)))
    with db.session() as s:
        view = latest_global_view(s)
    assert view is not None and view.version == "v2"


def test_a_failed_save_leaves_the_previous_view(db: Database) -> None:
    with db.session() as s:
        save_global_view(s, _view())
    broken = _view(words=[WordPush("garden", "hose", float("nan"), 1.0, 1, 1, 1.0)])
    with pytest.raises(ValueError, match="attribution of 'hose'"), db.session() as s:
        save_global_view(s, broken)
    with db.session() as s:
        view = latest_global_view(s)
    assert view is not None and len(view.words) == 4


def test_long_labels_and_words_are_cut_to_fit(db: Database) -> None:
    label, word = "l" * 300, "w" * 300
    view = _view(
        words=[
            WordPush(label, word, 0.5, 5.0, 1, 10, 1.0),
            WordPush(label, word + "x", 0.1, 1.0, 1, 10, 1.0),  # the same key once cut: dropped
        ],
        examples=[ExampleExplanation("q " + word, label, 0.5, 3, [("q", 0.1), (word, 0.5)])],
    )
    with db.session() as s:
        save_global_view(s, view)
    with db.session() as s:
        stored = latest_global_view(s)
    assert stored is not None
    assert [(w.label, w.word, w.total) for w in stored.words] == [(label[:128], word[:128], 5.0)]
    assert stored.examples[0].label == label[:128]
    assert stored.examples[0].words[1] == (word, 0.5)  # JSON keeps the whole word


def _search(i: int, norm: str, ts: datetime) -> dict:
    return {
        "query_id": f"q{i}",
        "session_id": f"s{i}",
        "ts": ts,
        "text": norm.upper(),
        "norm_text": norm,
        "locale": "en-GB",
        "shown": [],
    }


def test_recent_queries_sample_distinct_queries_with_their_searches(db: Database) -> None:
    since = T0 - timedelta(hours=1)
    searches = [_search(0, "old query", since - timedelta(minutes=1))]
    searches += [_search(1 + i, "garden hose", since + timedelta(minutes=i)) for i in range(3)]
    searches += [_search(10 + i, f"tail query {i}", since + timedelta(minutes=i)) for i in range(20)]
    searches.append(_search(40, "old query", since + timedelta(minutes=5)))  # once inside the window
    with db.session() as s:
        write_batch(s, searches, [])
    with db.session() as s:
        everything = dict(recent_queries(s, since=since, limit=100))
        assert everything["garden hose"] == 3 and everything["old query"] == 1
        assert len(everything) == 22
        first = recent_queries(s, since=since, limit=5, seed=1)
        assert recent_queries(s, since=since, limit=5, seed=1) == first  # deterministic for a seed
        assert len(first) == 5 and len({q for q, _ in first}) == 5
        others = [recent_queries(s, since=since, limit=5, seed=k) for k in range(2, 6)]
        assert any(o != first for o in others)  # another seed, another sample
        assert recent_queries(s, since=T0 + timedelta(days=1), limit=5) == []
        assert recent_queries(s, since=since, limit=0) == []


def test_the_dashboard_shows_the_newest_view(db: Database) -> None:
    from intentloop.dashboard.page import render_page
    from streams.drift.overview import build_overview
    from streams.drift.settings import DriftSettings

    assert build_overview(db, None, DriftSettings())["explanations"] is None
    with db.session() as s:
        save_global_view(s, _view())
    data = build_overview(db, None, DriftSettings())
    shown = data["explanations"]
    assert (shown["version"], shown["method"], shown["computed_at"]) == ("v1", "partition", T0.isoformat())
    assert [w["word"] for w in shown["labels"]["garden"]] == ["acme", "hose", "green"]
    assert shown["examples"][0] == {
        "query": "usb charger",
        "label": "electronics",
        "probability": 0.8,
        "words": [["usb", 0.1], ["charger", 0.6]],
    }
    page = render_page(data)
    assert page.count('class="chart explain"') == 2 and "only ever with this label: acme" in page
