"""The stream inference agent on a real broker: every valid query gets one prediction record,
naming the version that produced it; malformed records are skipped; offsets are committed."""

import asyncio
import json
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer
from serving_helpers import make_host, make_versions

from serving.adapters import SharedBase
from serving.agent import GROUP_ID, PredictAgent
from serving.settings import ServeSettings
from store.artifacts import ArtifactStore
from streams import topics
from streams.codec import encode
from streams.events import SearchQuery
from streams.kafka import EventProducer, ensure_topics

pytestmark = pytest.mark.integration


def _predictions(bootstrap, expected):
    consumer = KafkaConsumer(
        topics.PREDICTIONS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    out = [json.loads(m.value) for m in consumer]
    consumer.close()
    return out


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

    async def go():
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(2)  # nothing loaded: batches wait, nothing is produced or committed
        assert agent.counters.predicted == 0
        host.assign("champion", v1)
        host.assign("champion.de-DE", v2)
        for _ in range(300):
            if agent.counters.predicted >= len(queries):
                break
            await asyncio.sleep(0.1)
        agent.stop()
        return await task

    counters = asyncio.run(go())
    assert (counters.predicted, counters.malformed) == (40, 1)
    records = _predictions(kafka_bootstrap, 40)
    assert sorted(r["query_id"] for r in records) == sorted(q.query_id for q in queries)
    for r in records:
        de = int(r["query_id"][1:]) % 4 == 0
        assert r["version"] == (v2 if de else v1) and r["market"] == ("de-DE" if de else None)
        assert len(r["labels"]) == 2 and r["intent"] == r["labels"][0]["label"]
    committed = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=GROUP_ID, enable_auto_commit=False)
    from kafka import TopicPartition

    parts = [TopicPartition(topics.QUERIES, p) for p in committed.partitions_for_topic(topics.QUERIES)]
    assert sum(committed.committed(tp) or 0 for tp in parts) == 41  # every record, the malformed one too
    committed.close()
