"""The stream inference agent: ``search.queries`` -> ``intent.predictions`` with the same model host.

Why the same host as the HTTP worker: one swap protocol (verified, warmed, flipped between
batches), one routing (markets, sticky canary by session id) and one version per answer, whether a
query arrives over HTTP or Kafka. Each prediction record names the version that produced it.

Delivery is at-least-once, by the loop ingestion uses too (:class:`streams.batch_consumer.BatchConsumer`):
a whole fetch is predicted as one micro-batch, its predictions are acknowledged by Kafka, and only
then are its offsets committed; a crash replays the batch, and consumers dedupe on ``query_id``. While
no adapter is loaded the batch waits (nothing is committed), so no query goes unlabelled; stopped
while waiting, it declines the batch and nothing after it is committed. Malformed records are
skipped and counted (the ingestion worker dead-letters them already).
"""

import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord

from serving.exceptions import NotReadyError, ServingError
from serving.host import Answer, ModelHost, Request
from serving.settings import ServeSettings
from serving.worker import default_worker_id, start_watched_host
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry
from store.taxonomy import normalise_query
from streams import topics
from streams.batch_consumer import BatchConsumer, ConsumerConfig
from streams.codec import decode_query
from streams.events import SearchQuery
from streams.exceptions import MalformedEventError
from streams.kafka import kafka_errors
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)

GROUP_ID = "intentloop-predict"


@dataclass
class AgentCounters:
    batches: int = 0
    predicted: int = 0
    malformed: int = 0
    by_version: dict[str, int] = field(default_factory=dict)


class PredictAgent:
    """Predicts each fetched batch of queries in one host call, produces, then the batch commits."""

    def __init__(
        self,
        bootstrap: str,
        host: ModelHost,
        serve: ServeSettings,
        *,
        group_id: str = GROUP_ID,
        batch_size: int = 256,
        not_ready_wait_s: float = 1.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._host = host
        self._serve = serve
        self._not_ready_wait_s = not_ready_wait_s
        self._producer: AIOKafkaProducer | None = None
        self.counters = AgentCounters()
        config = ConsumerConfig(
            group_id=group_id, topics=(topics.QUERIES,), batch_size=batch_size, poll_timeout_ms=500
        )
        self._consumer = BatchConsumer(bootstrap, config, self)

    def stop(self) -> None:
        self._consumer.stop()

    async def run(self) -> AgentCounters:
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", linger_ms=5)
        await producer.start()
        self._producer = producer
        try:
            await self._consumer.run()
        finally:
            self._producer = None
            await producer.stop()
        log.info("predict agent stopped: %s", self.counters)
        return self.counters

    def prepare(self, records: list[ConsumerRecord]) -> list[SearchQuery]:
        """The batch's queries; malformed records are counted and skipped."""
        queries: list[SearchQuery] = []
        for rec in records:
            try:
                queries.append(decode_query(rec.value or b""))
            except MalformedEventError:
                self.counters.malformed += 1
        return queries

    async def process(self, queries: list[SearchQuery]) -> bool:
        """Predict, then produce every prediction and wait for Kafka's acks; ``False``: stopped unready."""
        if self._producer is None:
            raise RuntimeError("PredictAgent.process runs only inside PredictAgent.run")
        answers = await self._answers(queries)
        if answers is None:  # stopping while not ready: nothing was produced, nothing is committed
            return False
        sends = []
        for q, answer in zip(queries, answers, strict=True):
            if isinstance(answer, ServingError):  # an unknown market cannot happen: _request checks it
                log.error("query %s not predicted: %s", q.query_id, answer)
                continue
            value = json.dumps(_record(q, answer, self._market(q))).encode()
            sends.append(await self._producer.send(topics.PREDICTIONS, value, key=q.query_id.encode()))
            self.counters.by_version[answer.version] = self.counters.by_version.get(answer.version, 0) + 1
        if sends:
            await asyncio.gather(*sends)
        self.counters.batches += 1
        self.counters.predicted += len(sends)
        return True

    async def _answers(self, queries: list[SearchQuery]) -> list[Answer | ServingError] | None:
        """The host's answers once an adapter is loaded; ``None`` if stopped while none is."""
        requests = [self._request(q) for q in queries]
        loop = asyncio.get_running_loop()
        while True:
            answers = await loop.run_in_executor(None, self._host.run_group, requests)
            waiting = [a for a in answers if isinstance(a, NotReadyError)]
            if not waiting:
                return answers
            if self._consumer.stopping:
                return None
            log.warning("no adapter loaded yet (%s); the batch waits", waiting[0])
            await asyncio.sleep(self._not_ready_wait_s)

    def _market(self, q: SearchQuery) -> str | None:
        return q.locale if q.locale in self._host.markets else None

    def _request(self, q: SearchQuery) -> Request:
        text = normalise_query(q.query) or q.query
        return Request(
            texts=[text],
            top_k=self._serve.top_k,
            abstain_below=self._serve.abstain_threshold,
            market=self._market(q),
            session=q.session_id,
        )


def _record(q: SearchQuery, answer: Answer, market: str | None) -> dict[str, object]:
    (p,) = answer.predictions
    return {
        "query_id": q.query_id,
        "session_id": q.session_id,
        "query": q.query,
        "intent": p.intent,
        "abstained": p.intent is None,
        "labels": [{"label": lab, "probability": round(pr, 6)} for lab, pr in p.labels],
        "version": answer.version,
        "alias": answer.alias,
        "market": market,
        "predicted_at": datetime.now(UTC).isoformat(),
        **(
            {
                "dimensions": {
                    d: {"label": a.label, "probability": round(a.labels[0][1], 6)}
                    for d, a in p.dimensions.items()
                }
            }
            if p.dimensions
            else {}
        ),
    }


def run_predict_agent(
    bootstrap: str,
    db: Database,
    registry: RedisRegistry,
    artifacts: ArtifactStore,
    model: ModelSettings,
    serve: ServeSettings,
    *,
    worker_id: str | None = None,
) -> AgentCounters:
    """Run until SIGTERM/SIGINT with an alias watcher, like ``worker serve``."""
    wid = worker_id or f"predict-{default_worker_id()}"
    host, watcher = start_watched_host(db, registry, artifacts, model, serve, wid)
    try:
        return asyncio.run(_main(bootstrap, host, serve))
    finally:
        watcher.stop()


async def _main(bootstrap: str, host: ModelHost, serve: ServeSettings) -> AgentCounters:
    agent = PredictAgent(bootstrap, host, serve)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, agent.stop)
    t = time.monotonic()
    with kafka_errors(bootstrap, f"Kafka at {bootstrap}"):
        counters = await agent.run()
    log.info("predicted %d queries in %.0fs", counters.predicted, time.monotonic() - t)
    return counters
