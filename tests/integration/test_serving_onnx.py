"""The ONNX backend end to end: a training run publishes its graphs, and inference workers (real
processes on real Postgres and Redis, tiny encoder) hot-swap exported versions on their int8 graphs
under load and refuse a damaged graph while the old version keeps serving.

Exact assertions: zero failed requests, zero responses mixing versions, the version and the backend
every worker serves after each step."""

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import (
    TEXTS,
    Load,
    make_exported_versions,
    metric_value,
    republish_with_files,
)
from sqlalchemy import insert

from intentloop.stack import Endpoints
from intentloop.worker_processes import (
    WorkerProcess,
    endpoint_env,
    free_port,
    http_ready,
    served_version,
    wait_until,
)
from serving.adapters import Backend, SharedBase
from store.artifacts import ArtifactStore
from store.db import Database
from store.models import SearchQuery, WeakLabel
from store.registry import RedisRegistry
from store.versions import promote, record_version
from trainer.onnx_graph import GRAPH, GRAPH_INT8, SECTION
from trainer.pipeline import run_training
from trainer.settings import ExportSettings, ModelSettings, TrainSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_QUERIES = {
    "electronics": ["usb cable", "phone charger", "hdmi adapter", "wireless mouse"],
    "fashion": ["red shoe", "blue dress", "leather boots", "denim jacket"],
    "garden": ["garden hose", "flower pot", "lawn mower", "seed tray"],
}


def _seed_labels(db: Database, copies: int = 4) -> None:
    """Weak labels (3 votes each) and one search per query: a snapshot with a validation split."""
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [(f"{q} {i}", label) for label, qs in _QUERIES.items() for q in qs for i in range(copies)]
    with db.session() as s:
        s.execute(
            insert(WeakLabel),
            [{"norm_text": q, "label": lab, "votes": 3.0, "events": 3, "last_ts": ts} for q, lab in rows],
        )
        s.execute(
            insert(SearchQuery),
            [
                {"query_id": q, "session_id": "s", "ts": ts, "text": q, "norm_text": q, "locale": "en-US"}
                | {"shown": []}
                for q, _ in rows
            ],
        )


def test_a_training_run_publishes_its_checked_graphs(db: Database, tiny_encoder_dir: Path, tmp_path: Path):
    _seed_labels(db)
    store = ArtifactStore(tmp_path / "artifacts")
    model = ModelSettings(base_dir=tiny_encoder_dir, max_length=16)
    train = TrainSettings(min_steps=0, epochs=1, batch_size=16, init="base", checkpoint=False)
    outcome = run_training(db, store, model, train, progress=False, champion=None)
    path, manifest = store.fetch(outcome.version)
    section = manifest[SECTION]
    assert GRAPH in manifest["files"] and section["fp32"]["published"] is True
    assert section["fp32"]["max_abs_diff"] <= train.export.fp32_tolerance
    assert 0 < section["held_out_rows"] <= train.export.parity_rows  # the validation split
    int8 = section["int8"]  # published or not, the manifest says which, and why not
    assert (GRAPH_INT8 in manifest["files"]) is int8["published"] is (path / GRAPH_INT8).is_file()
    assert int8["published"] or int8["reason"]
    base = SharedBase(tiny_encoder_dir, backend=Backend("onnx"))
    adapter = base.build(outcome.version, path, manifest)
    assert adapter.backend == "onnx-fp32"
    torch_base = SharedBase(tiny_encoder_dir)
    reference = torch_base.build(outcome.version, path, manifest)
    np.testing.assert_allclose(
        base.predict_proba(adapter, TEXTS), torch_base.predict_proba(reference, TEXTS), atol=1e-3, rtol=0
    )

    off = TrainSettings(
        min_steps=0, epochs=1, batch_size=16, init="base", checkpoint=False, export=ExportSettings(onnx=False)
    )
    plain = run_training(db, store, model, off, progress=False, champion=None)
    _, manifest = store.fetch(plain.version)
    assert SECTION not in manifest and not {GRAPH, GRAPH_INT8} & set(manifest["files"])


TOKEN = "test-admin-token"


def _worker(env: dict[str, str], port: int, name: str, tmp_path: Path) -> WorkerProcess:
    w = WorkerProcess(
        ["worker", "serve", "--port", str(port), "--worker-id", name], env, tmp_path / f"{name}.log"
    )
    try:
        wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), timeout_s=90, what=f"{name} up", proc=w)
    except BaseException:
        w.stop()  # never leave a worker holding its port after the test
        raise
    return w


def _ready(port: int) -> dict:
    r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def _answered(load: Load, port: int, version: str, since: int) -> int:
    return sum(1 for r in load.records[since:] if r["port"] == port and r.get("version") == version)


def _all_serve(ports: list[int], workers: list[WorkerProcess], version: str) -> None:
    for port, proc in zip(ports, workers, strict=True):
        wait_until(partial(_serves, port, version), timeout_s=60, what=f"{version} served", proc=proc)


def _serves(port: int, version: str) -> bool:
    return served_version(port) == version


def _traffic_on(load: Load, ports: list[int], version: str, count: int) -> None:
    """Wait until every worker answered ``count`` more requests with ``version``."""
    mark = len(load.records)
    for port in ports:
        wait_until(partial(_enough, load, port, version, mark, count), timeout_s=30, what=f"{version} load")


def _enough(load: Load, port: int, version: str, since: int, count: int) -> bool:
    return _answered(load, port, version, since) >= count


def _integrity_refusals(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return metric_value(text, "intentloop_adapter_refusals_total", reason="integrity")


def test_two_onnx_workers_hot_swap_under_load_and_refuse_a_damaged_graph(
    db: Database, pg_url: str, redis_url: str, redis_prefix: str, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    v1, v2, v3 = make_exported_versions(store, tiny_encoder_dir, [31, 32, 33])
    # v3's files with a garbage int8 graph, hashes resealed: the store accepts it, the backend must not.
    damaged = republish_with_files(store, v3, tmp_path, {GRAPH_INT8: b"\x08\x07not a graph" * 200})
    with db.session() as s:
        for v in (v1, v2, v3, damaged):
            _, manifest = store.fetch(v)
            assert GRAPH_INT8 in manifest["files"]
            record_version(s, version=v, manifest=manifest, uri=str(store.path(v)), run_id=None)
    env = endpoint_env(
        Endpoints("127.0.0.1:1", pg_url, redis_url),
        {
            "INTENTLOOP_REDIS__KEY_PREFIX": redis_prefix,
            "INTENTLOOP_MODEL__BASE_DIR": str(tiny_encoder_dir),
            "INTENTLOOP_ARTIFACTS__DIR": str(tmp_path / "artifacts"),
            "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
            "INTENTLOOP_SERVE__RECONCILE_INTERVAL_S": "0.5",
            "INTENTLOOP_SERVE__ADMIN_TOKEN": TOKEN,
            "INTENTLOOP_SERVE__TORCH_THREADS": "1",
            "INTENTLOOP_SERVE__BACKEND": "onnx",
            "INTENTLOOP_SERVE__INT8": "true",
            "INTENTLOOP_SERVE__ONNX_THREADS": "1",
        },
    )
    ports = [free_port(), free_port()]
    registry = RedisRegistry(redis_url, prefix=redis_prefix)
    workers: list[WorkerProcess] = []
    load = Load(ports)
    try:
        for i, port in enumerate(ports, 1):
            workers.append(_worker(env, port, f"w{i}", tmp_path))
        promote(db, registry, v1, actor="test", reason="first")
        _all_serve(ports, workers, v1)
        load.start()
        for version in (v1, v2, v3):
            if version != v1:
                promote(db, registry, version, actor="test", reason="next")
                _all_serve(ports, workers, version)
            _traffic_on(load, ports, version, 10)
            for port in ports:
                ready = _ready(port)
                assert ready["version"] == version and ready["backends"][version] == "onnx-int8"
                assert set(ready["backends"].values()) == {"onnx-int8"}  # the warm versions too

        # A damaged graph is refused by both workers; v3 keeps serving.
        promote(db, registry, damaged, actor="test", reason="damaged int8 graph")
        for port, proc in zip(ports, workers, strict=True):
            wait_until(partial(_integrity_refusals_are, port, 1), timeout_s=30, what="refusal", proc=proc)
            assert f"refused adapter {damaged} (integrity)" in proc.log_path.read_text()
        _traffic_on(load, ports, v3, 20)
        for port in ports:
            ready = _ready(port)
            assert ready["version"] == v3 and damaged not in ready["backends"]
            reason = ready["refused"][damaged]
            assert reason.startswith("integrity: ") and GRAPH_INT8 in reason
    finally:
        records = load.stop()
        for w in workers:
            w.stop()
        registry.close()
    assert len(records) > 100
    assert [r for r in records if r["status"] != 200] == []
    assert [r for r in records if r.get("mixed")] == []
    order = [v1, v2, v3]
    for port in ports:  # each worker moved forward only, v1 -> v2 -> v3, never to the damaged one
        served = [order.index(r["version"]) for r in records if r["port"] == port]
        assert served == sorted(served) and set(served) == {0, 1, 2}


def _integrity_refusals_are(port: int, count: int) -> bool:
    return _integrity_refusals(port) == count
