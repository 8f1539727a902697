"""The whole loop on real servers and real worker processes, with a tiny in-process encoder."""

import httpx
import pytest
from kafka import KafkaConsumer

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
from store.catalog import load_catalog
from store.events import ingest_stats
from store.registry import RedisRegistry
from store.settings import TaxonomySettings
from store.taxonomy import label_for_category
from store.versions import promote
from streams import topics
from streams.kafka import ensure_topics
from streams.simulator import SimConfig, simulate
from streams.simulator.publish import produce, traffic_records
from trainer.metrics import accuracy
from trainer.pipeline import run_training
from trainer.settings import ModelSettings, TrainSettings
from trainer.split import is_validation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _dead_letter_reasons(bootstrap: str, expected: int) -> list[str]:
    consumer = KafkaConsumer(
        topics.DEAD_LETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    reasons = [dict(m.headers)["reason"].decode() for m in consumer]
    consumer.close()
    return reasons


def test_loop_closes_and_hot_swaps(
    db, pg_url, redis_url, redis_prefix, kafka_bootstrap, tiny_encoder_dir, tmp_path
):
    sim = simulate(SimConfig(seed=3, n_searches=2500, n_products=400))
    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())
    records, sent = traffic_records(sim, malformed=12, unknown_product=5, seed=3)
    ensure_topics(kafka_bootstrap, partitions=4)
    produce(kafka_bootstrap, records, progress=False)

    artifacts = tmp_path / "artifacts"
    env = endpoint_env(
        Endpoints(kafka_bootstrap, pg_url, redis_url),
        {
            "INTENTLOOP_REDIS__KEY_PREFIX": redis_prefix,
            "INTENTLOOP_MODEL__BASE_DIR": str(tiny_encoder_dir),
            "INTENTLOOP_ARTIFACTS__DIR": str(artifacts),
            "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
            "INTENTLOOP_SERVE__RECONCILE_INTERVAL_S": "0.5",
        },
    )
    ingest = WorkerProcess(["worker", "ingest"], env, tmp_path / "ingest.log")
    try:

        def caught_up() -> bool:
            with db.session() as s:
                st = ingest_stats(s)
            return st.queries + st.feedback + st.dead_letters >= sent.total and not st.feedback_by_status.get(
                "pending"
            )

        wait_until(caught_up, timeout_s=240, what="ingestion", proc=ingest, interval_s=0.5)
    finally:
        ingest.stop()
    with db.session() as s:
        st = ingest_stats(s)
    assert (st.queries, st.feedback, st.dead_letters) == (sent.queries, sent.feedback, sent.malformed)
    assert st.feedback_by_status["unknown_product"] == sent.unknown_product
    assert st.weak_label_queries > 100
    reasons = _dead_letter_reasons(kafka_bootstrap, sent.malformed)
    assert len(reasons) == sent.malformed and all(reasons)

    store = ArtifactStore(artifacts)
    train = TrainSettings(
        min_steps=0, epochs=12, learning_rate=5e-3, batch_size=32, patience=4, min_votes=1.0
    )
    model = ModelSettings(base_dir=tiny_encoder_dir, max_length=16)
    first = run_training(db, store, model, train, progress=False)

    port = free_port()
    server = WorkerProcess(
        ["worker", "serve", "--port", str(port), "--worker-id", "loop-test"], env, tmp_path / "serve.log"
    )
    registry = RedisRegistry(redis_url, prefix=redis_prefix)
    try:
        wait_until(http_ready(f"http://127.0.0.1:{port}/healthz"), timeout_s=60, what="serve up", proc=server)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        promote(db, registry, first.version, actor="test", reason="first")
        wait_until(
            lambda: served_version(port) == first.version, timeout_s=60, what="first version", proc=server
        )

        second = run_training(db, store, model, train.model_copy(update={"seed": 99}), progress=False)
        assert second.version != first.version
        promote(db, registry, second.version, actor="test", reason="second")
        wait_until(lambda: served_version(port) == second.version, timeout_s=60, what="hot swap", proc=server)
        assert server.alive()  # swapped without a restart

        held_out = [q for q in sorted(sim.truth) if is_validation(q, train.val_fraction)]
        gold = [label_for_category(sim.truth[q], TaxonomySettings()) for q in held_out]
        body = httpx.post(
            f"http://127.0.0.1:{port}/v1/intent", json={"queries": held_out[:64]}, timeout=30
        ).json()
        assert body["version"] == second.version
        predicted = [p["labels"][0]["label"] for p in body["predictions"]]
        n_labels = len(set(gold))
        assert accuracy(gold[:64], predicted) > 2.5 / n_labels  # clearly above chance

        bad = httpx.post(f"http://127.0.0.1:{port}/v1/intent", json={"queries": []})
        assert bad.status_code == 422 and "queries" in bad.text
        both = httpx.post(f"http://127.0.0.1:{port}/v1/intent", json={"query": "a", "queries": ["b"]})
        assert both.status_code == 422 and "exactly one" in both.text
    finally:
        server.stop()
        registry.close()
