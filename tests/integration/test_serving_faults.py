"""Inference workers under faults, as real processes on real Postgres and Redis (tiny encoder).

Exact assertions: zero failed requests, zero responses mixing versions, and the version every
worker serves after each step.
"""

import subprocess
from collections import Counter

import httpx
import pytest
import redis
from serving_helpers import Load, make_versions, metric_value
from sqlalchemy import func, select

from intentloop.stack import Endpoints
from intentloop.worker_processes import (
    WorkerProcess,
    endpoint_env,
    free_port,
    http_ready,
    served_version,
    wait_until,
)
from store.artifacts import ArtifactStore
from store.models import PredictionCount
from store.registry import RedisRegistry
from store.versions import promote, record_version

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "test-admin-token"
SESSIONS = 50  # canary stickiness keys the load cycles through


def _env(pg_url, redis_url, prefix, tiny_encoder_dir, tmp_path, **extra):
    return endpoint_env(
        Endpoints("127.0.0.1:1", pg_url, redis_url),
        {
            "INTENTLOOP_REDIS__KEY_PREFIX": prefix,
            "INTENTLOOP_MODEL__BASE_DIR": str(tiny_encoder_dir),
            "INTENTLOOP_ARTIFACTS__DIR": str(tmp_path / "artifacts"),
            "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
            "INTENTLOOP_SERVE__RECONCILE_INTERVAL_S": "0.5",
            "INTENTLOOP_SERVE__ADMIN_TOKEN": TOKEN,
            "INTENTLOOP_SERVE__TORCH_THREADS": "1",
            **extra,
        },
    )


def _versions(db, tmp_path, tiny_encoder_dir, seeds):
    store = ArtifactStore(tmp_path / "artifacts")
    versions = make_versions(store, tiny_encoder_dir, seeds)
    with db.session() as s:
        for v in versions:
            _, manifest = store.fetch(v)
            record_version(s, version=v, manifest=manifest, uri=str(store.path(v)), run_id=None)
    return store, versions


def _worker(env, port, name, tmp_path):
    w = WorkerProcess(
        ["worker", "serve", "--port", str(port), "--worker-id", name], env, tmp_path / f"{name}.log"
    )
    wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), timeout_s=90, what=f"{name} up", proc=w)
    return w


def _admin(port, path, body):
    return httpx.post(
        f"http://127.0.0.1:{port}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


def _metrics(port):
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def _all_serve(ports, version, procs, what):
    for port, proc in zip(ports, procs, strict=True):
        wait_until(lambda p=port: served_version(p) == version, timeout_s=60, what=what, proc=proc)


def test_two_workers_converge_catch_up_refuse_corruption_and_roll_back_warm(
    db, pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path
):
    store, (v1, v2, v3, v4) = _versions(db, tmp_path, tiny_encoder_dir, [1, 2, 3, 4])
    env = _env(
        pg_url, redis_url, redis_prefix, tiny_encoder_dir, tmp_path, INTENTLOOP_SERVE__CANARY_SHARE="0.5"
    )
    p1, p2 = free_port(), free_port()
    registry = RedisRegistry(redis_url, prefix=redis_prefix)
    w1 = _worker(env, p1, "w1", tmp_path)
    w2 = _worker(env, p2, "w2", tmp_path)
    load = None
    try:
        promote(db, registry, v1, actor="test", reason="first")
        _all_serve([p1, p2], v1, [w1, w2], "both on v1")
        load = Load([p1, p2], sessions=SESSIONS).start()

        # A worker down during a promotion catches up when it returns.
        load.ports = [p1]
        w2.stop()
        promote(db, registry, v2, actor="test", reason="while w2 is down")
        _all_serve([p1], v2, [w1], "w1 on v2")
        w2 = _worker(env, p2, "w2", tmp_path)
        _all_serve([p2], v2, [w2], "w2 caught up")
        load.ports = [p1, p2]

        # The admin endpoint of one worker promotes for all of them.
        r = _admin(p2, "/admin/champion/promote", {"version": v3, "reason": "admin"})
        assert r.status_code == 200 and r.json() == {"alias": "champion", "version": v3, "previous": v2}
        _all_serve([p1, p2], v3, [w1, w2], "both on v3")

        # A corrupt artifact is refused by both; v3 keeps serving.
        head = store.path(v4) / "head.safetensors"
        head.write_bytes(head.read_bytes()[:-8])
        assert _admin(p1, "/admin/champion/promote", {"version": v4}).status_code == 200
        for port, proc in ((p1, w1), (p2, w2)):
            wait_until(
                lambda p=port: (
                    metric_value(_metrics(p), "intentloop_adapter_refusals_total", reason="integrity") == 1
                ),
                timeout_s=30,
                what="refusal counted",
                proc=proc,
            )
            assert served_version(port) == v3
            assert f"refused adapter {v4} (integrity)" in proc.log_path.read_text()

        # Rollbacks: v4 -> v3 (already served), then v3 -> v2, still loaded: a flip without a reload.
        assert _admin(p1, "/admin/champion/rollback", {}).json()["version"] == v3
        assert _admin(p1, "/admin/champion/rollback", {}).json()["version"] == v2
        _all_serve([p1, p2], v2, [w1, w2], "both rolled back to v2")
        for port in (p1, p2):
            text = _metrics(port)
            assert metric_value(text, "intentloop_swaps_total", alias="champion", kind="warm") == 1
            assert metric_value(text, "intentloop_served_version", alias="champion", version=v2) == 1

        # Canary: half the sessions (sticky) go to v3 on both workers, until it is rolled back.
        assert _admin(p2, "/admin/canary/start", {"version": v3}).status_code == 200
        wait_until(
            lambda: any(r.get("alias") == "canary" for r in load.records[-20:]), timeout_s=30, what="canary"
        )
        mark = len(load.records)
        wait_until(
            lambda: _every_session_answered_twice(load.records[mark:]),
            timeout_s=60,
            what="every session answered twice during the canary",
        )
        window = [r for r in load.records[mark:] if r["status"] == 200]
        by_session = {}
        for rec in window:
            by_session.setdefault(rec["session"], set()).add((rec["alias"], rec["version"]))
        assert all(len(v) == 1 for v in by_session.values()), "a session switched sides"
        sides = {next(iter(v)) for v in by_session.values()}
        assert sides == {("champion", v2), ("canary", v3)}
        assert _admin(p1, "/admin/canary/rollback", {}).json()["version"] == v3
        wait_until(
            lambda: all(r.get("alias") == "champion" for r in load.records[-10:]),
            timeout_s=30,
            what="canary gone",
        )
        assert {w for w in registry.workers()} >= {"w1", "w2"}
    finally:
        records = load.stop() if load else []
        w1.stop()
        w2.stop()
        registry.close()
    assert len(records) > 100
    assert [r for r in records if r["status"] != 200] == []
    assert [r for r in records if r.get("mixed")] == []


def _every_session_answered_twice(records):
    """Enough traffic to judge stickiness: each of the load's sessions got two 200s in ``records``."""
    answered = Counter(r["session"] for r in records if r["status"] == 200)
    return len(answered) == SESSIONS and min(answered.values()) >= 2


def _redis_server(port, tmp_path):
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _redis_up(url):
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_redis_restart_while_serving(db, pg_url, tiny_encoder_dir, tmp_path):
    _, (v1, v2) = _versions(db, tmp_path, tiny_encoder_dir, [1, 2])
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _redis_server(port, tmp_path)
    wait_until(lambda: _redis_up(url), timeout_s=20, what="private redis")
    env = _env(pg_url, url, "fault", tiny_encoder_dir, tmp_path)
    wp = free_port()
    worker = _worker(env, wp, "w", tmp_path)
    registry = RedisRegistry(url, prefix="fault")
    load = None
    try:
        promote(db, registry, v1, actor="test", reason="first")
        _all_serve([wp], v1, [worker], "v1")
        load = Load([wp]).start()
        server.terminate()
        server.wait(10)
        outage_start = len(load.records)
        wait_until(  # several reconcile intervals without Redis, serving all along
            lambda: (
                worker.log_path.read_text().count("registry unreachable") >= 3
                and len(load.records) - outage_start > 20
            ),
            timeout_s=60,
            what="three failed reconciles",
            proc=worker,
        )
        during = load.records[outage_start:]
        assert worker.alive() and len(during) > 20
        assert {(r["status"], r.get("version")) for r in during} == {(200, v1)}
        assert "registry unreachable" in worker.log_path.read_text()

        server = _redis_server(port, tmp_path)  # back, empty: no persistence
        wait_until(lambda: _redis_up(url), timeout_s=20, what="redis back")
        # The worker reconciles: the alias is re-seeded from Postgres' audit trail, not lost.
        wait_until(
            lambda: registry.get_alias("champion") == v1, timeout_s=30, what="alias re-seeded", proc=worker
        )
        registry.close()
        promote(db, registry, v2, actor="test", reason="after the restart")
        _all_serve([wp], v2, [worker], "v2 after the restart")
        wait_until(  # traffic on v2, to show it stays there
            lambda: sum(r.get("version") == v2 for r in load.records) >= 50,
            timeout_s=60,
            what="traffic on v2",
        )
    finally:
        records = load.stop() if load else []
        worker.stop()
        registry.close()
        server.terminate()
        server.wait(10)
    assert [r for r in records if r["status"] != 200] == []
    versions = [r["version"] for r in records]
    first_v2 = versions.index(v2)
    assert set(versions[:first_v2]) == {v1} and set(versions[first_v2:]) == {v2}  # one flip, no flapping
    # Every served prediction reached Postgres for the drift job, the Redis outage notwithstanding:
    # two queries a request, counted per version, flushed by the watcher (the last flush on SIGTERM).
    with db.session() as s:
        per_version = select(PredictionCount.version, func.sum(PredictionCount.count))
        counted = dict(s.execute(per_version.group_by(PredictionCount.version)).all())
    assert counted == {v: 2 * n for v, n in Counter(versions).items()}
