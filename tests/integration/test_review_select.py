"""`intentloop review select` on real Postgres with a (synthetic) champion on the tiny encoder.

The pool is the weak-label rows nobody reviewed: queries with gold (a file's, or a reviewer's) and
queries already queued are never offered again. Every queued item carries why it was chosen and
what the reviewer will see (the champion's top labels, the weak labels, what was clicked, the
explanation); the random strategy draws the same queries for the same seed.
"""

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select
from training_helpers import search_rows, training_env

from intentloop.review.select import select as select_for_review
from intentloop.runtime import Runtime
from intentloop.settings import Settings
from serving.synthetic import synthetic_adapter
from store.artifacts import MANIFEST, ArtifactStore
from store.drift import upsert_drift_reports
from store.labels import replace_label_distributions, upsert_gold
from store.models import FeedbackEvent, Product, ReviewItem, SearchQuery
from store.registry import RedisRegistry
from store.review import NewItem, add_reviewer, decide, enqueue
from store.versions import promote, record_version

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_LABELS = ["electronics", "fashion", "grocery"]
_WORDS = ["usb", "cable", "red", "shoes", "oat", "milk", "hdmi", "dress", "tea", "lamp", "green", "socks"]
# 24 distinct queries; the first three get gold / a review / a queue slot before selection
_QUERIES = [f"{_WORDS[i % 12]} {_WORDS[(i * 5 + 3) % 12]} {i}" for i in range(24)]
FILE_GOLD, REVIEWED, QUEUED = _QUERIES[0], _QUERIES[1], _QUERIES[2]


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path)


def _distribution_rows() -> list[dict]:
    rows = []
    for i, q in enumerate(_QUERIES):
        abstained = i % 4 == 3
        label = _LABELS[i % 3]
        dist = {label: 0.6, _LABELS[(i + 1) % 3]: 0.4} if i % 2 else {label: 1.0}
        rows.append(
            {
                "norm_text": q,
                "label": None if abstained else label,
                "confidence": 0.0 if abstained else max(dist.values()),
                "evidence": 0.0 if abstained else 2.0 + i,
                "distribution": {} if abstained else dist,
                "abstained": abstained,
                "reason": "no_evidence" if abstained else "",
                "method": "majority",
                "searches": 30 - i,
                "weight": 1.0,
            }
        )
    return rows


def _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir, *, champion: bool = True) -> str:
    store = ArtifactStore(Path(env["INTENTLOOP_ARTIFACTS__DIR"]))
    version = synthetic_adapter(store, tiny_encoder_dir, seed=3, labels=_LABELS, max_length=16)
    manifest = json.loads((store.path(version) / MANIFEST).read_text())
    now = datetime.now(UTC) - timedelta(hours=1)
    evidence_query = _QUERIES[5]
    with db.session() as s:
        record_version(s, version=version, manifest=manifest, uri=str(store.path(version)), run_id=None)
        replace_label_distributions(s, _distribution_rows())
        upsert_gold(s, [(FILE_GOLD, "fashion")], source="gold.csv", purpose="eval")
        s.execute(insert(SearchQuery), search_rows({evidence_query: 2}, now))
        s.execute(
            insert(Product),
            [
                {
                    "product_id": "p1",
                    "category_path": "fashion",
                    "label": "fashion",
                    "title": "Red <b>Shoe</b>",
                }
            ],
        )
        s.execute(
            insert(FeedbackEvent),
            [
                {
                    "event_id": f"e{k}",
                    "query_id": f"{evidence_query}#{k}",
                    "ts": now,
                    "type": kind,
                    "product_id": "p1",
                    "position": 0,
                    "dwell_ms": None,
                    "weight": 1.0,
                    "status": "voted",
                    "label": "fashion",
                }
                for k, kind in enumerate(["click", "purchase"])
            ],
        )
        upsert_drift_reports(s, [_drift_report(now, new_labels=["grocery"])])
        add_reviewer(s, "alice", hashlib.sha256(b"token").hexdigest())
        enqueue(s, "category", [_item(REVIEWED, 0), _item(QUEUED, 1)])
    with db.session() as s:
        reviewed_id = s.scalar(select(ReviewItem.id).where(ReviewItem.norm_text == REVIEWED))
        decide(s, reviewed_id, "alice", "label", "grocery", 3.0)
    if champion:
        promote(db, RedisRegistry(redis_url, prefix=redis_prefix), version, actor="test", reason="review")
    return version


def _item(query: str, rank: int) -> NewItem:
    return NewItem(query, "active", rank, 1.0, {"strategy": "active"}, None, "fashion", [], None, [], None, 5)


def _drift_report(now: datetime, *, new_labels: list[str]) -> dict:
    return {
        "stream": "weak_labels",
        "reference": "previous",
        "window_start": now - timedelta(hours=1),
        "window_end": now,
        "version": None,
        "n": 100,
        "n_reference": 100,
        "js": 0.3,
        "psi": 0.5,
        "hellinger": 0.3,
        "linf": 0.2,
        "p_value": 0.001,
        "status": "alert",
        "alert": True,
        "new_labels": new_labels,
        "vanished_labels": [],
        "reasons": ["new label"],
        "details": {"moves": [{"label": "electronics", "share": 0.5, "reference_share": 0.3, "delta": 0.2}]},
    }


def _queued(db, batch: int) -> list[ReviewItem]:
    with db.session() as s:
        rows = s.scalars(select(ReviewItem).where(ReviewItem.batch == batch).order_by(ReviewItem.rank)).all()
        s.expunge_all()
        return list(rows)


def test_active_selection_queues_reasons_and_what_the_reviewer_sees(
    db, env, redis_url, redis_prefix, tiny_encoder_dir, monkeypatch
):
    version = _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir)
    monkeypatch.setenv("INTENTLOOP_REVIEW__RANDOM_SHARE", "0.25")
    monkeypatch.setenv("INTENTLOOP_REVIEW__OVERLAP", "0.25")
    rt = Runtime.from_settings(Settings())
    try:
        result = select_for_review(rt, budget=8, strategy="active", seed=1)
    finally:
        rt.close()

    assert result.version == version and result.pool == 21  # 24 minus gold, reviewed, queued
    summary = result.summary()
    assert summary["selected"] == 8 and summary["by_strategy"] == {"active": 6, "random": 2}
    assert summary["double_reviewed"] == 2 and result.batch == 2
    rows = _queued(db, 2)
    assert [r.rank for r in rows] == list(range(8))
    assert {r.norm_text for r in rows}.isdisjoint({FILE_GOLD, REVIEWED, QUEUED})
    assert sorted(r.strategy for r in rows) == ["active"] * 6 + ["random"] * 2
    assert sum(r.wanted == 2 for r in rows) == 2
    active = [r for r in rows if r.strategy == "active"]
    # the random encoder finds most queries alike: the spread ones come first, best first, then
    # the best near-duplicates fill the budget (the pool ran out of different queries)
    spread_out = [r for r in active if r.reasons["nearest_similarity"] < 0.9]
    filled = [r for r in active if r.reasons["nearest_similarity"] >= 0.9]
    assert spread_out and active == spread_out + filled
    assert [r.score for r in spread_out] == sorted((r.score for r in spread_out), reverse=True)
    assert all("near-duplicate of a chosen query" in r.reasons["why"][-1] for r in filled)
    for r in rows:
        assert r.version == version and r.searches > 0
        assert set(r.reasons) == {"strategy", "score", "components", "why", "nearest_similarity"}
        assert r.reasons["strategy"] == r.strategy and r.reasons["why"]
        assert set(r.reasons["components"]) == {
            "uncertainty",
            "disagreement",
            "abstained",
            "drift",
            "searches",
        }
        assert len(r.probabilities) == 3 and r.suggestion == r.probabilities[0][0]
        assert [p for _, p in r.probabilities] == sorted((p for _, p in r.probabilities), reverse=True)
        assert r.explanation is not None and r.explanation["method"] == "occlusion"
        assert r.explanation["label"] == r.suggestion
        assert [w for w, _ in r.explanation["words"]] == r.norm_text.split()
    for r in active:
        assert r.reasons["nearest_similarity"] is not None
    for r in rows:
        if r.strategy == "random":
            assert r.reasons["why"][0].startswith("drawn at random (seed 1)")
        drifted = r.probabilities[0][0] in ("grocery", "electronics") or (
            r.weak and r.weak["label"] in ("grocery", "electronics")
        )
        assert r.reasons["components"]["drift"] == (1.0 if drifted else 0.0)
    abstained = [r for r in rows if r.weak and r.weak["abstained"]]
    assert all(r.weak and r.weak["reason"] == "no_evidence" and r.weak["label"] is None for r in abstained)

    # a second batch never repeats a queued query
    rt = Runtime.from_settings(Settings())
    try:
        again = select_for_review(rt, budget=8, strategy="active", seed=1)
    finally:
        rt.close()
    assert again.batch == 3 and again.pool == 13
    assert {i.query for i in again.items}.isdisjoint({r.norm_text for r in rows})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intentloop", "review", *args], capture_output=True, text=True, timeout=300
    )


def test_random_strategy_is_deterministic_for_a_seed_and_the_cli_reports_it(
    db, env, redis_url, redis_prefix, tiny_encoder_dir
):
    _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir)
    first = _cli("select", "--budget", "5", "--strategy", "random", "--seed", "7")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["selected"] == 5 and summary["by_strategy"] == {"active": 0, "random": 5}
    assert summary["batch"] == 2 and summary["pool"] == 21
    drawn = [r.norm_text for r in _queued(db, 2)]
    assert len(drawn) == 5 and {FILE_GOLD, REVIEWED, QUEUED}.isdisjoint(drawn)
    with db.session() as s:
        s.execute(delete(ReviewItem).where(ReviewItem.batch == 2))
    second = _cli("select", "--budget", "5", "--strategy", "random", "--seed", "7")
    assert second.returncode == 0, second.stderr
    assert [r.norm_text for r in _queued(db, 2)] == drawn
    with db.session() as s:
        s.execute(delete(ReviewItem).where(ReviewItem.batch == 2))
    other = _cli("select", "--budget", "5", "--strategy", "random", "--seed", "8")
    assert other.returncode == 0, other.stderr
    assert [r.norm_text for r in _queued(db, 2)] != drawn

    evidence = {r.norm_text: r.evidence for r in _queued(db, 2)}
    status = _cli("status", "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["queue"] == {"queued": 7, "reviewed": 1, "skipped": 0, "pending": 6}
    assert body["agreement"]["items"] == 0 and body["agreement"]["kappa"] is None
    assert all(isinstance(v, list) for v in evidence.values())


def test_evidence_is_stored_with_the_item(db, env, redis_url, redis_prefix, tiny_encoder_dir, monkeypatch):
    _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir)
    monkeypatch.setenv("INTENTLOOP_REVIEW__EXPLAIN", "false")
    rt = Runtime.from_settings(Settings())
    try:
        result = select_for_review(rt, budget=21, strategy="random", seed=0)
    finally:
        rt.close()
    assert len(result.items) == 21 and result.batch == 2
    rows = {r.norm_text: r for r in _queued(db, 2)}
    assert rows[_QUERIES[5]].evidence == [
        {"type": "purchase", "product_id": "p1", "title": "Red <b>Shoe</b>", "label": "fashion", "n": 1},
        {"type": "click", "product_id": "p1", "title": "Red <b>Shoe</b>", "label": "fashion", "n": 1},
    ]
    assert all(r.explanation is None for r in rows.values())
    assert sum(r.evidence != [] for r in rows.values()) == 1


def test_without_a_champion_selection_leans_on_the_weak_labels(
    db, env, redis_url, redis_prefix, tiny_encoder_dir
):
    _seed(db, env, redis_url, redis_prefix, tiny_encoder_dir, champion=False)
    rt = Runtime.from_settings(Settings())
    try:
        result = select_for_review(rt, budget=5, strategy="active", seed=0)
    finally:
        rt.close()
    assert result.version is None and result.batch == 2
    assert result.summary()["by_strategy"] == {"active": 4, "random": 1}
    for r in _queued(db, 2):
        assert r.version is None and r.probabilities == [] and r.explanation is None
        assert r.suggestion == (r.weak or {}).get("label")
        assert r.reasons["components"]["disagreement"] == 0.0
        if r.strategy == "active":
            assert r.reasons["nearest_similarity"] is not None  # character n-grams stand in
    # abstained queries are the least certain without a model, busy ones first
    first = _queued(db, 2)[0]
    assert first.weak is not None and first.weak["abstained"] and first.norm_text == _QUERIES[3]


def test_token_add_prints_once_and_stores_only_the_hash(db, env):
    added = _cli("token", "add", "bob")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 43
    with db.session() as s:
        from store.review import reviewer_for

        assert reviewer_for(s, hashlib.sha256(token.encode()).hexdigest()) == "bob"
        assert reviewer_for(s, token) is None
    revoked = _cli("token", "revoke", "bob")
    assert revoked.returncode == 0 and "revoked bob" in revoked.stdout
    with db.session() as s:
        from store.review import reviewer_for

        assert reviewer_for(s, hashlib.sha256(token.encode()).hexdigest()) is None
    again = _cli("token", "revoke", "bob")
    assert again.returncode != 0 and "no active reviewer 'bob'" in again.stderr
