"""Incremental and sharded aggregation on real Postgres equal the full recomputation.

Simulated traffic (realistic shoppers with intent types, returns up to two weeks after a purchase)
is written in time steps the way ingestion writes it, so each step brings new searches, late
feedback on searches folded before (returns, clicks after the cut) and new "next searches" of
sessions folded before; the window slides and the decay's newest search moves. After every step
the incremental run's distributions and report must equal a full run's on the same data.
"""

import json
import math
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from test_labels_job import _feedback_row, _query_row, run_cli, seed

from store.db import Database
from store.dimensions import CATEGORY, INTENT_TYPE
from store.label_stats import replace_bucket
from store.labels import latest_labeling_report
from store.models import LabelDistribution, LabelFoldState, LabelStat
from streams.labels_incremental import Shard, fold, run_incremental
from streams.labels_job import run_aggregation
from streams.simulator import SimConfig, Simulation, simulate
from streams.weak.settings import LabelSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIMS = (CATEGORY, INTENT_TYPE)
# ten days of window over twenty of traffic, daily buckets, decay that matters within the window
SETTINGS = LabelSettings(window_days=10.0, half_life_days=3.0, bucket_hours=24.0)


@pytest.fixture
def cli_env(monkeypatch, pg_url, redis_url, tmp_path):
    """The CLI pointed at the test database (as in test_labels_job)."""
    monkeypatch.setenv("INTENTLOOP_POSTGRES__URL", pg_url)
    monkeypatch.setenv("INTENTLOOP_REDIS__URL", redis_url)
    monkeypatch.setenv("INTENTLOOP_KAFKA__BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("INTENTLOOP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SimConfig.long_tail(seed=3, n_searches=1500, days=20.0))


def write_until(db: Database, sim: Simulation, cut: Any, done: set[str]) -> None:
    """Every event of ``sim`` before ``cut`` not written yet (``done``: event ids written)."""
    from store.events import write_batch

    queries = [_query_row(q) for q in sim.queries if q.timestamp < cut and q.query_id not in done]
    feedback = [_feedback_row(f) for f in sim.feedback if f.timestamp < cut and f.event_id not in done]
    done.update(str(q["query_id"]) for q in queries)
    done.update(f["event_id"] for f in feedback)
    with db.session() as s:
        write_batch(s, queries, feedback)


def stored(db: Database) -> dict[tuple[str, str], dict[str, Any]]:
    with db.session() as s:
        return {
            (d.dimension, d.norm_text): {
                "label": d.label,
                "confidence": d.confidence,
                "evidence": d.evidence,
                "distribution": d.distribution,
                "abstained": d.abstained,
                "reason": d.reason,
                "searches": d.searches,
                "weight": d.weight,
                "method": d.method,
            }
            for d in s.scalars(select(LabelDistribution))
        }


def reports(db: Database) -> dict[str, dict[str, Any]]:
    out = {}
    with db.session() as s:
        for dim in DIMS:
            entry = latest_labeling_report(s, dim)
            assert entry is not None
            out[dim] = {k: v for k, v in entry.report.items() if k not in ("computed_at", "wall_s")}
    return out


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-6 relative (sums in another order), and the report's 4-decimal
    roundings to one unit in the last place."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            assert_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1.01e-4), (path, a, b)
    else:
        assert a == b, (path, a, b)


def incremental_equals_full(db: Database, settings: LabelSettings = SETTINGS) -> dict[str, Any]:
    result = run_incremental(db, settings, dimensions=DIMS, progress=False)
    labels, report = stored(db), reports(db)
    run_aggregation(db, settings, dimensions=DIMS, progress=False)
    assert_close(labels, stored(db))
    assert_close(report, reports(db))
    assert result.fold is not None
    return result.fold


@pytest.mark.parametrize("steps", [(0.4, 0.55, 0.7, 0.85, 1.01), (0.5, 0.75, 1.01)])
def test_incremental_steps_equal_a_full_recomputation(db, sim, steps):
    seed_catalog(db, sim)
    span = sim.queries[-1].timestamp - sim.queries[0].timestamp
    done: set[str] = set()
    folds = []
    for share in steps:
        write_until(db, sim, sim.queries[0].timestamp + span * share, done)
        folds.append(incremental_equals_full(db))
    # later runs reuse what earlier runs folded: not every bucket is refolded every time
    assert any(f["current_buckets"] > 0 for f in folds[1:])
    # the window slid: buckets before it are gone from the store
    with db.session() as s:
        oldest = s.scalar(select(func.min(LabelFoldState.bucket)))
    assert oldest is not None and oldest > int(sim.queries[0].timestamp.timestamp() // SETTINGS.bucket_s)


def test_nothing_changed_folds_nothing_and_late_feedback_refolds(db, sim):
    from store.events import write_batch

    seed_catalog(db, sim)
    with db.session() as s:  # searches first, all feedback held back
        write_batch(s, [_query_row(q) for q in sim.queries], [])
    assert incremental_equals_full(db)["folded_buckets"] > 0
    assert incremental_equals_full(db)["folded_buckets"] == 0
    with db.session() as s:
        write_batch(s, [], [_feedback_row(f) for f in sim.feedback])
    assert incremental_equals_full(db)["folded_buckets"] > 0


def test_shards_give_the_result_of_one_process(db, sim):
    seed(db, sim)
    for i in range(3):
        summary = fold(db, SETTINGS, shard=Shard(i, 3), dimensions=DIMS, progress=False)
        assert summary.folded_buckets > 0 and summary.shard == f"{i}/3"
    # the combining run reuses every bucket the three shards folded
    assert incremental_equals_full(db)["folded_buckets"] == 0
    with db.session() as s:
        n_three = s.scalar(select(func.count()).select_from(LabelStat))
    # one process refolds everything when the settings change, and still equals the full run
    other = SETTINGS.model_copy(update={"half_life_days": 5.0})
    assert incremental_equals_full(db, other)["folded_buckets"] > 0
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(LabelStat)) == n_three


def test_cli_shard_then_aggregate(db, sim, cli_env, capsys):
    seed(db, sim)
    for i in range(2):
        code, out, err = run_cli(capsys, "labels", "aggregate", "--shard", f"{i}/2", "--quiet")
        assert code == 0, err
        assert json.loads(out.strip().splitlines()[-1])["shard"] == f"{i}/2"
    code, out, err = run_cli(capsys, "labels", "aggregate", "--quiet")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["mode"] == "incremental" and summary["fold"]["folded_buckets"] == 0
    code, out, err = run_cli(capsys, "labels", "aggregate", "--full", "--quiet")
    assert code == 0, err
    full = json.loads(out.strip().splitlines()[-1])
    assert full["mode"] == "full" and full["labelled"] == summary["labelled"]
    code, _, err = run_cli(capsys, "labels", "aggregate", "--full", "--shard", "0/2")
    assert code != 0 and "--full" in err


def seed_catalog(db: Database, sim: Simulation) -> None:
    from store.catalog import load_catalog
    from store.settings import TaxonomySettings

    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())


def test_two_folds_of_one_bucket_at_once_leave_one_set_of_statistics(db):
    """A retried shard pod and the refresh beside each other: the second fold of a bucket waits
    for the first one's transaction and then replaces its rows, instead of adding to them."""
    def fold(session, value: float) -> None:
        replace_bucket(
            session,
            bucket=7,
            shard=0,
            n_shards=1,
            fingerprint="f",
            config="c",
            stats={(CATEGORY, "votes", "red shoe", "clicked", "fashion", "1"): value},
            records=[],
        )

    first_holds_the_lock = threading.Event()
    second_done = threading.Event()

    def second() -> None:
        first_holds_the_lock.wait(10)
        with db.session() as s:
            fold(s, 2.0)
        second_done.set()

    worker = threading.Thread(target=second)
    worker.start()
    with db.session() as s:
        fold(s, 1.0)
        first_holds_the_lock.set()
        assert not second_done.wait(1.0)  # blocked on the bucket's lock while this one is open
    worker.join(10)
    assert second_done.is_set()
    with db.session() as s:
        rows = s.execute(select(func.count(), func.sum(LabelStat.value)).where(LabelStat.bucket == 7)).one()
    assert tuple(rows) == (1, 2.0)
