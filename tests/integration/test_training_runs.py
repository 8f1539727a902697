"""Training automation on real Postgres and Redis with a tiny encoder: the dataset snapshot, warm
starts, crash and resume, the one-trainer lock and the scheduler (cron and drift requests)."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from training_helpers import training_env

from intentloop.cli import EXIT_ERROR, main
from intentloop.jobs import train_and_maybe_promote
from intentloop.runtime import Runtime
from intentloop.schedule import Scheduler
from intentloop.settings import Settings
from intentloop.stack import Endpoints
from store.exceptions import TrainingLockedError
from store.labels import latest_labeling_report, upsert_gold
from store.models import SearchQuery, TrainingRun, WeakLabel
from store.registry import RedisRegistry
from store.training import TrainingLock
from store.versions import recorded_alias
from trainer.settings import TrainSettings
from trainer.snapshot import ROWS_FILE, build_snapshot
from trainer.split import is_validation

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABELS = ["electronics", "fashion", "garden"]
_WORDS = {
    "fashion": ["red shoe", "blue dress", "leather boots", "denim jacket"],
    "electronics": ["usb cable", "hdmi adapter", "phone charger", "wireless mouse"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray"],
}
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _add(db, queries: list[tuple[str, str]], ts: datetime, searches: int = 1) -> None:
    """Weak labels (3 votes, one label) and ``searches`` searches per query, all at ``ts``."""
    with db.session() as s:
        s.execute(
            insert(WeakLabel),
            [{"norm_text": q, "label": lab, "votes": 3.0, "events": 3, "last_ts": ts} for q, lab in queries],
        )
        rows = [
            {
                "query_id": f"{q}#{ts.isoformat()}#{k}",
                "session_id": "s",
                "ts": ts,
                "text": q,
                "norm_text": q,
                "locale": "en-US",
                "shown": [],
            }
            for q, _ in queries
            for k in range(searches)
        ]
        s.execute(insert(SearchQuery), rows)


def _queries(n: int, start: int = 0, labels: list[str] = LABELS) -> list[tuple[str, str]]:
    return [
        (f"{_WORDS[labels[i % len(labels)]][i % 4]} {i}", labels[i % len(labels)])
        for i in range(start, start + n)
    ]


@pytest.fixture
def env(monkeypatch, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path):
    return training_env(
        monkeypatch,
        pg_url,
        redis_url,
        redis_prefix,
        tiny_encoder_dir,
        tmp_path,
        INTENTLOOP_TRAIN__EPOCHS="3",
        INTENTLOOP_TRAIN__PATIENCE="5",
        INTENTLOOP_TRAIN__GATE__MIN_MACRO_F1="0",
        INTENTLOOP_TRAIN__GATE__MIN_ACCURACY="0",
        INTENTLOOP_TRAIN__GATE__TOLERANCE="1",
    )


def _runtime(env, **train_overrides) -> Runtime:
    settings = Settings()
    settings = settings.model_copy(update={"train": settings.train.model_copy(update=train_overrides)})
    endpoints = Endpoints(
        env["INTENTLOOP_KAFKA__BOOTSTRAP"], env["INTENTLOOP_POSTGRES__URL"], env["INTENTLOOP_REDIS__URL"]
    )
    return Runtime(settings, endpoints)


def _run(db, run_id: int) -> TrainingRun:
    with db.session() as s:
        run = s.get(TrainingRun, run_id)
        assert run is not None
        s.expunge(run)
        return run


def test_snapshot_fresh_window_replay_gold_and_no_leak(db):
    old, fresh = _queries(120), _queries(30, start=1000)
    _add(db, old[:20], T0, searches=20)  # head: searched a lot
    _add(db, old[20:], T0, searches=1)  # tail
    _add(db, fresh, T0 + timedelta(days=1))
    train_q = [q for q, _ in old if not is_validation(q, 0.2)]
    val_q = [q for q, _ in old if is_validation(q, 0.2)]
    weak = dict(old)

    def other(label: str) -> str:
        return LABELS[(LABELS.index(label) + 1) % 3]

    gold = [
        (train_q[0], other(weak[train_q[0]])),
        (val_q[0], other(weak[val_q[0]])),
        ("brand new gold query", "electronics"),
    ]
    with db.session() as s:
        upsert_gold(s, gold, purpose="train")
    settings = TrainSettings(replay_min=10, replay_ratio=0.5, replay_tail_boost=1000.0, seed=1)

    snap = build_snapshot(db, settings, fresh_since=T0, champion="v1")
    c = snap.summary["counts"]
    fresh_train = [q for q, _ in fresh if not is_validation(q, 0.2)]
    assert c["fresh"] == len(fresh_train)
    assert c["replay"] == max(10, -(-len(fresh_train) // 2)) < c["older"]
    assert c["replay_tail"] == c["replay"]  # a 1000x tail boost replays only tail queries
    assert snap.summary["window"] == {
        "fresh_since": T0.isoformat(),
        "end": (T0 + timedelta(days=1)).isoformat(),
        "champion": "v1",
    }
    texts_train = [e.text for e in snap.train]
    texts_val = {e.text for e in snap.val}
    assert len(texts_train) == len(set(texts_train))  # one row per query
    assert not set(texts_train) & texts_val  # split by query: nothing leaks
    assert all(not is_validation(t, 0.2) for t in texts_train) and all(
        is_validation(t, 0.2) for t in texts_val
    )
    # every validation-bucket query is validated on (not a sample), gold overriding weak
    assert texts_val == {q for q, _ in [*old, *fresh] if is_validation(q, 0.2)} | {
        q for q, _ in gold if is_validation(q, 0.2)
    }
    by_text = {e.text: e for e in [*snap.train, *snap.val]}
    for q, lab in gold:
        assert by_text[q].label == lab and by_text[q].gold and by_text[q].weight == 1.0
    assert c["gold_overrides"] == 2
    again = build_snapshot(db, settings, fresh_since=T0, champion="v1")
    assert again.summary["content_sha256"] == snap.summary["content_sha256"]
    other = build_snapshot(
        db, settings.model_copy(update={"seed": 2, "replay_tail_boost": 1.0}), fresh_since=T0
    )
    assert other.summary["content_sha256"] != snap.summary["content_sha256"]
    # no champion window: everything is fresh, nothing to replay
    first = build_snapshot(db, settings, fresh_since=None)
    assert (first.summary["counts"]["older"], first.summary["counts"]["replay"]) == (0, 0)
    assert len(first.train) == first.summary["counts"]["pool_train"] + first.summary["counts"]["gold_train"]


def test_eval_gold_is_never_trained_on_and_always_held_out(db):
    old = _queries(120)
    _add(db, old, T0)
    train_q = [q for q, _ in old if not is_validation(q, 0.2)]
    weak = dict(old)
    eval_gold = [(q, weak[q]) for q in train_q[:5]]  # training-bucket queries, declared for evaluation
    train_gold = [(train_q[5], weak[train_q[5]])]
    with db.session() as s:
        upsert_gold(s, eval_gold, source="eval-file")
        upsert_gold(s, train_gold, source="train-file", purpose="train")
    val_q = [q for q, _ in old if is_validation(q, 0.2)]
    with db.session() as s:
        upsert_gold(s, [(val_q[0], weak[val_q[0]])], source="eval-file")  # a validation-bucket one too
    snap = build_snapshot(db, TrainSettings(seed=1), fresh_since=None)
    used = {e.text for e in [*snap.train, *snap.val]}
    # neither trained on (as gold or as a weak row) nor used to pick the epoch
    assert not used & {q for q, _ in [*eval_gold, (val_q[0], "")]}
    assert train_gold[0][0] in {e.text for e in snap.train}
    c = snap.summary["counts"]
    assert (c["gold_eval"], c["gold_train"], c["gold_val"]) == (6, 1, 0)
    assert len(snap.train) == c["pool_train"] + c["gold_train"]


def test_refresh_windows_warm_start_crash_resume_and_champion_safety(db, env, tmp_path, capsys):
    _add(db, _queries(150), T0)
    registry = RedisRegistry(env["INTENTLOOP_REDIS__URL"], prefix=env["INTENTLOOP_REDIS__KEY_PREFIX"])
    rt = _runtime(env)
    first = train_and_maybe_promote(rt, promote=True, progress=False)
    assert first["promoted"]
    run1 = _run(db, first["run_id"])
    assert run1.status == "succeeded" and run1.device == "cpu/fp32" and run1.metrics["duration_s"] > 0
    assert run1.snapshot["window"] == {"fresh_since": None, "end": T0.isoformat(), "champion": None}
    assert run1.snapshot["init"] == {
        "requested": "champion",
        "champion": None,
        "from": "base",
        "fallback": "no champion yet",
    }
    assert run1.params["peft_method"] == "lora" and run1.params["seed"] == 13
    run_dir = tmp_path / "state" / "runs" / str(run1.id)
    assert (run_dir / ROWS_FILE).is_file() and not (run_dir / "checkpoint").exists()

    # New labels arrive: the next refresh's fresh window starts where the champion's data ended,
    # and it warm-starts from the champion.
    _add(db, _queries(40, start=500), T0 + timedelta(hours=6))
    second = train_and_maybe_promote(rt, promote=True, progress=False)
    run2 = _run(db, second["run_id"])
    assert run2.snapshot["window"]["fresh_since"] == T0.isoformat()
    assert run2.snapshot["counts"]["fresh"] == sum(
        1 for q, _ in _queries(40, start=500) if not is_validation(q, 0.2)
    )
    assert run2.snapshot["init"]["from"] == "champion" and run2.metrics["init"]["from"] == "adapter"
    champion = second["version"] if second["promoted"] else first["version"]
    assert registry.get_alias("champion") == champion

    # A run that crashes after epoch 1 is recorded failed, keeps its checkpoint, moves nothing ...
    _add(db, _queries(20, start=900), T0 + timedelta(hours=12))

    def crash(epoch: int, scores: dict) -> None:
        if epoch == 1:
            raise RuntimeError("injected crash after epoch 1")

    with pytest.raises(RuntimeError, match="injected crash"):
        train_and_maybe_promote(rt, promote=True, progress=False, on_epoch_end=crash)
    with db.session() as s:
        crashed = s.query(TrainingRun).order_by(TrainingRun.id.desc()).first()
        crashed_id, status, error = crashed.id, crashed.status, crashed.error
        assert recorded_alias(s) == champion
    assert status == "failed" and "injected crash" in error
    assert registry.get_alias("champion") == champion
    assert (tmp_path / "state" / "runs" / str(crashed_id) / "checkpoint" / "LATEST").read_text() == "epoch-1"

    # ... and `intentloop train --resume` finishes that very run from its checkpoint.
    capsys.readouterr()
    main(["train", "--resume", "--quiet", "--promote"])
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["run_id"] == crashed_id and resumed["metrics"]["resumed"] is True
    run3 = _run(db, crashed_id)
    assert run3.status == "succeeded" and run3.version == resumed["version"]
    assert run3.snapshot["resumes"] == 1 and run3.metrics["epochs_run"] == 3
    with pytest.raises(SystemExit) as exc:  # nothing left to resume
        main(["train", "--resume"])
    assert exc.value.code == EXIT_ERROR
    assert f"training run {crashed_id} is succeeded" in capsys.readouterr().err

    # A new label: the champion's head cannot take it, so the refresh starts from the base and says so.
    _add(db, [(f"oat milk {i}", "grocery") for i in range(30)], T0 + timedelta(days=1))
    fourth = train_and_maybe_promote(rt, progress=False)
    init = _run(db, fourth["run_id"]).snapshot["init"]
    assert (
        init["from"] == "base" and "label set differs" in init["fallback"] and "grocery" in init["fallback"]
    )
    rt.close()
    registry.close()


def _hold_lock_in_subprocess(pg_url: str) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from store.db import Database\n"
        "from store.training import TrainingLock\n"
        f"lock = TrainingLock(Database({pg_url!r}), owner='holder-under-test')\n"
        "lock.acquire()\n"
        "from store.versions import start_run\n"
        f"with Database({pg_url!r}).session() as s:\n"
        "    start_run(s, trigger='manual', params={})\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_one_trainer_at_a_time_and_the_lock_dies_with_its_holder(db, env, capsys):
    _add(db, _queries(60), T0)
    holder = _hold_lock_in_subprocess(env["INTENTLOOP_POSTGRES__URL"])
    try:
        with pytest.raises(SystemExit) as exc:
            main(["train", "--quiet"])
        assert exc.value.code == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("error: another training run is in progress (held by holder-under-test")
        with db.session() as s:  # refused before a run was even recorded (the one is the holder's)
            assert [r.status for r in s.query(TrainingRun)] == ["running"]
        rt = _runtime(env)
        assert Scheduler(rt).tick().action == "busy"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    deadline = time.monotonic() + 10
    while True:  # Postgres ends the dead client's session, and its lock with it
        try:
            with TrainingLock(db):
                break
        except TrainingLockedError:
            assert time.monotonic() < deadline, "lock not released after kill -9"
            time.sleep(0.2)
    # the dead holder's run is found by the next lock holder and recorded as interrupted
    assert Scheduler(rt).tick().action == "idle"  # no rows written: nothing to resume
    with db.session() as s:
        (run,) = s.query(TrainingRun).all()
        assert run.status == "interrupted" and "died" in run.error
    rt.close()


def test_scheduler_runs_on_a_drift_request_on_cron_and_resumes_interrupted_runs(db, env):
    _add(db, _queries(90), T0)
    registry = RedisRegistry(env["INTENTLOOP_REDIS__URL"], prefix=env["INTENTLOOP_REDIS__KEY_PREFIX"])
    clock = [datetime(2025, 3, 1, 12, 0, tzinfo=UTC)]
    rt = _runtime(env, schedule="0 2 * * *")
    scheduler = Scheduler(rt, now=lambda: clock[0])
    assert scheduler.next_fire == datetime(2025, 3, 2, 2, 0, tzinfo=UTC)
    assert scheduler.tick().action == "idle"

    assert registry.request_refresh({"reason": "label drift js=0.31 > 0.2", "at": "2025-03-01T11:59:00Z"})
    drift = scheduler.tick()
    assert drift.action == "drift" and drift.error is None, drift.error
    assert registry.pending_refresh() is None  # claimed when the run started
    run = _run(db, drift.result["run_id"])
    assert run.trigger == "drift" and run.status == "succeeded"
    # The refresh aggregated the labels first (INTENTLOOP_TRAIN__AGGREGATE_FIRST): a report over the
    # 90 searches; none had feedback, so every query abstained and training kept the weak labels.
    with db.session() as s:
        report = latest_labeling_report(s)
    assert report is not None and report.report["searches"] == 90 and report.report["labelled"] == 0
    assert run.snapshot["trigger"]["request"]["reason"] == "label drift js=0.31 > 0.2"
    assert drift.result["promoted"] and registry.get_alias("champion") == drift.result["version"]
    assert scheduler.tick().action == "idle"  # one request, one run

    # An interrupted run (SIGTERM/Ctrl-C in the middle) is resumed by the next tick.
    def interrupt(epoch: int, scores: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_maybe_promote(rt, progress=False, on_epoch_end=interrupt)
    with db.session() as s:
        interrupted = s.query(TrainingRun).order_by(TrainingRun.id.desc()).first()
        interrupted_id = interrupted.id
        assert interrupted.status == "interrupted"
    resumed = scheduler.tick()
    assert resumed.action == "resume" and resumed.result["run_id"] == interrupted_id
    assert _run(db, interrupted_id).status == "succeeded"

    clock[0] = datetime(2025, 3, 2, 2, 0, 1, tzinfo=UTC)
    cron = scheduler.tick()
    assert cron.action == "cron" and _run(db, cron.result["run_id"]).trigger == "cron"
    assert scheduler.next_fire == datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    assert scheduler.tick().action == "idle"
    rt.close()
    registry.close()
