"""Fuzzed bad input through the real broker and worker: every bad event dead-lettered with a reason,
valid events around them all kept, the worker never down."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fuzz_strategies import PAYLOADS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topic_reader import read_topic

from intentloop.stack import Endpoints
from intentloop.worker_processes import WorkerProcess, endpoint_env, wait_until
from store.catalog import load_catalog
from store.events import ingest_stats
from store.settings import TaxonomySettings
from streams import topics
from streams.codec import encode
from streams.events import Feedback, FeedbackType
from streams.ingestion.batch import RawRecord, decode_batch
from streams.kafka import EventProducer, ensure_topics
from streams.settings import IngestSettings
from streams.simulator import SimConfig, simulate
from streams.simulator.publish import traffic_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_payloads = st.lists(
    st.tuples(
        st.sampled_from(topics.INPUT_TOPICS),
        st.one_of(PAYLOADS, st.just(b"{" * 70_000)),
    ),
    min_size=30,
    max_size=40,
)


def _is_bad(topic: str, raw: bytes) -> bool:
    return bool(decode_batch([RawRecord(topic, 0, 0, raw)], IngestSettings(), datetime.now(UTC)).dead)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(fuzz=_payloads)
def test_fuzzed_events_are_dead_lettered_and_valid_ones_kept(
    fuzz, db, pg_url, redis_url, kafka_bootstrap, tmp_path_factory
):
    tmp_path = tmp_path_factory.mktemp("bad")
    sim = simulate(SimConfig(seed=5, n_searches=300, n_products=200))
    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())
    good, sent = traffic_records(sim, seed=5)
    now = datetime.now(UTC)
    orphan = Feedback(
        event_id="orphan-1",
        query_id="never-sent",
        timestamp=now,
        type=FeedbackType.click,
        product_id=sim.catalog[0].product_id,
        position=0,
    )
    future = sim.queries[0].model_copy(
        update={"query_id": "from-the-future", "timestamp": now + timedelta(days=30)}
    )
    bad = [*fuzz, (topics.QUERIES, encode(future))]
    expected_dead = sum(_is_bad(t, raw) for t, raw in bad)
    ensure_topics(kafka_bootstrap, partitions=2)
    with EventProducer(kafka_bootstrap) as producer:
        for i, (topic, key, value) in enumerate(good):
            producer.send(topic, key, value)
            if i % 50 == 0 and bad:  # bad events interleaved with good ones
                t, raw = bad.pop()
                producer.send(t, None, raw)
        for t, raw in bad:
            producer.send(t, None, raw)
        producer.send(topics.FEEDBACK, orphan.query_id, encode(orphan))

    env = endpoint_env(
        Endpoints(kafka_bootstrap, pg_url, redis_url),
        {
            "INTENTLOOP_STATE_DIR": str(tmp_path),
            "INTENTLOOP_INGEST__SWEEP_INTERVAL_S": "1",
            "INTENTLOOP_INGEST__ORPHAN_AFTER_S": "3",
            "INTENTLOOP_INGEST__SESSION_TIMEOUT_S": "6",
        },
    )
    worker = WorkerProcess(["worker", "ingest"], env, tmp_path / "ingest.log")
    try:

        def done() -> bool:
            with db.session() as s:
                st_ = ingest_stats(s)
            return (
                st_.dead_letters >= expected_dead
                and st_.queries >= sent.queries
                and st_.feedback_by_status.get("unknown_query") == 1
            )

        wait_until(done, timeout_s=180, what="bad input to be dead-lettered", proc=worker, interval_s=0.5)
        assert worker.alive()
    finally:
        worker.stop()
    with db.session() as s:
        st_ = ingest_stats(s)
    assert st_.dead_letters == expected_dead
    valid_fuzz = Counter(t for t, raw in fuzz if not _is_bad(t, raw))
    assert st_.queries == sent.queries + valid_fuzz[topics.QUERIES]  # every valid query kept
    # valid feedback + the orphan + fuzz that happened to be valid feedback
    assert st_.feedback == sent.feedback + 1 + valid_fuzz[topics.FEEDBACK]
    dead = read_topic(kafka_bootstrap, topics.DEAD_LETTER)  # acknowledged before their offsets committed
    reasons = Counter(dict(m.headers)["reason"].decode().split(":")[0] for m in dead)
    assert sum(reasons.values()) == expected_dead + 1
    assert reasons["unknown_query"] == 1 and reasons["timestamp_in_future"] >= 1
