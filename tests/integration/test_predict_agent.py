"""The stream inference agent on a real broker: every valid query gets one prediction record,
naming the version that produced it; malformed records are skipped; offsets are committed."""

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition
from serving_helpers import make_host, make_versions
from topic_reader import read_topic

from serving.adapters import SharedBase
from serving.agent import GROUP_ID, PredictAgent
from serving.exceptions import NotReadyError
from serving.settings import ServeSettings
from store.artifacts import ArtifactStore
from streams import topics
from streams.codec import encode
from streams.events import SearchQuery
from streams.kafka import EventProducer, ensure_topics

pytestmark = pytest.mark.integration


async def _until(predicate, task, what, timeout_s=60.0):
    """Wait for ``predicate`` while the agent runs; fail at once with its error if it stops."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if task.done():
            task.result()  # raises what stopped it
            pytest.fail(f"the agent stopped while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def _count_not_ready(host):
    """Count the host's answers to a batch while no adapter is loaded (the agent then waits)."""
    seen = {"not_ready": 0}
    run_group = host.run_group

    def spy(requests):
        answers = run_group(requests)
        seen["not_ready"] += any(isinstance(a, NotReadyError) for a in answers)
        return answers

    host.run_group = spy
    return seen


def test_agent_labels_the_query_stream(kafka_bootstrap, tiny_encoder_dir, tmp_path):
    ensure_topics(kafka_bootstrap, partitions=2)
    store = ArtifactStore(tmp_path / "artifacts")
    v1, v2 = make_versions(store, tiny_encoder_dir, [1, 2])
    host = make_host(store, SharedBase(tiny_encoder_dir), markets=["de-DE"])
    queries = [
        SearchQuery(
            query_id=f"q{i}",
            session_id=f"s{i % 7}",
            timestamp=datetime.now(UTC),
            query=f"Red Shoes {i}",
            locale="de-DE" if i % 4 == 0 else "en-US",
        )
        for i in range(40)
    ]
    with EventProducer(kafka_bootstrap) as producer:
        for q in queries[:20]:
            producer.send(topics.QUERIES, q.query_id, encode(q))
        producer.send(topics.QUERIES, "bad", b"{not json")
        for q in queries[20:]:
            producer.send(topics.QUERIES, q.query_id, encode(q))

    agent = PredictAgent(kafka_bootstrap, host, ServeSettings(top_k=2), batch_size=16, not_ready_wait_s=0.1)
    seen = _count_not_ready(host)

    async def go():
        task = asyncio.create_task(agent.run())
        # Nothing loaded: a batch is turned away twice (it waits, it is not dropped), nothing produced.
        await _until(lambda: seen["not_ready"] >= 2, task, "a batch to wait for an adapter")
        assert agent.counters.predicted == 0 and agent.counters.batches == 0
        host.assign("champion", v1)
        host.assign("champion.de-DE", v2)
        await _until(lambda: agent.counters.predicted >= len(queries), task, "every query predicted")
        agent.stop()
        return await task

    counters = asyncio.run(go())
    assert (counters.predicted, counters.malformed) == (40, 1)
    records = [json.loads(m.value) for m in read_topic(kafka_bootstrap, topics.PREDICTIONS)]
    assert len(records) == 40  # one prediction each, none twice
    assert sorted(r["query_id"] for r in records) == sorted(q.query_id for q in queries)
    for r in records:
        de = int(r["query_id"][1:]) % 4 == 0
        assert r["version"] == (v2 if de else v1) and r["market"] == ("de-DE" if de else None)
        assert len(r["labels"]) == 2 and r["intent"] == r["labels"][0]["label"]
    committed = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=GROUP_ID, enable_auto_commit=False)
    parts = [TopicPartition(topics.QUERIES, p) for p in committed.partitions_for_topic(topics.QUERIES)]
    assert sum(committed.committed(tp) or 0 for tp in parts) == 41  # every record, the malformed one too
    committed.close()
