"""Shared set-up for tests that run real ingestion workers against a known stream."""

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from intentloop.stack import Endpoints
from intentloop.worker_processes import WorkerProcess, endpoint_env, wait_until
from store.catalog import load_catalog
from store.db import Database
from store.events import IngestStats, ingest_stats
from store.settings import TaxonomySettings
from streams.kafka import ensure_topics
from streams.simulator import SimConfig, Simulation, simulate
from streams.simulator.publish import TrafficCounts, produce, traffic_records

# Votes recomputed from the stored events: what weak_labels must equal if no vote was lost or doubled.
_VOTES_FROM_EVENTS = text(
    """
    SELECT q.norm_text, f.label, sum(f.weight), count(*)
      FROM feedback_events f JOIN search_queries q ON q.query_id = f.query_id
     WHERE f.status = 'voted' GROUP BY 1, 2
    """
)
_VOTES_STORED = text("SELECT norm_text, label, votes, events FROM weak_labels")


@dataclass
class Stream:
    sim: Simulation
    sent: TrafficCounts
    env: dict[str, str]
    db: Database
    logs: Path

    def worker(self, name: str) -> WorkerProcess:
        return WorkerProcess(["worker", "ingest"], self.env, self.logs / f"{name}.log")

    def stats(self) -> IngestStats:
        with self.db.session() as s:
            return ingest_stats(s)

    def processed(self) -> int:
        st = self.stats()
        return st.queries + st.feedback + st.dead_letters

    def wait_done(self, proc: WorkerProcess | None = None, timeout_s: float = 300) -> None:
        def done() -> bool:
            st = self.stats()
            return (
                st.queries + st.feedback + st.dead_letters >= self.sent.total
                and not st.feedback_by_status.get("pending")
            )

        wait_until(done, timeout_s=timeout_s, what="ingestion to finish", proc=proc, interval_s=0.5)

    def wait_processed(self, at_least: int, proc: WorkerProcess, timeout_s: float = 120) -> None:
        wait_until(
            lambda: self.processed() >= at_least,
            timeout_s=timeout_s,
            what=f"{at_least} events",
            proc=proc,
            interval_s=0.1,
        )

    def assert_exact(self) -> None:
        """Every sent event stored once, every vote counted once."""
        st = self.stats()
        assert (st.queries, st.feedback, st.dead_letters) == (
            self.sent.queries,
            self.sent.feedback,
            self.sent.malformed,
        )
        assert st.feedback_by_status.get("unknown_product", 0) == self.sent.unknown_product
        assert "pending" not in st.feedback_by_status
        with self.db.session() as s:
            expected = {(r[0], r[1]): (round(r[2], 6), r[3]) for r in s.execute(_VOTES_FROM_EVENTS)}
            stored = {(r[0], r[1]): (round(r[2], 6), r[3]) for r in s.execute(_VOTES_STORED)}
        assert stored == expected and stored


def make_stream(
    *,
    db: Database,
    endpoints: Endpoints,
    tmp_path: Path,
    searches: int,
    seed: int,
    partitions: int = 4,
    extra_env: dict[str, str] | None = None,
) -> Stream:
    """Catalog loaded, topics created and the whole known stream produced before any worker runs."""
    sim = simulate(SimConfig(seed=seed, n_searches=searches, n_products=400))
    with db.session() as s:
        load_catalog(s, [p.model_dump() for p in sim.catalog], TaxonomySettings())
    records, sent = traffic_records(sim, malformed=12, unknown_product=5, seed=seed)
    ensure_topics(endpoints.kafka_bootstrap, partitions=partitions)
    produce(endpoints.kafka_bootstrap, records, progress=False)
    env = endpoint_env(
        endpoints,
        {
            "INTENTLOOP_STATE_DIR": str(tmp_path / "state"),
            "INTENTLOOP_INGEST__SESSION_TIMEOUT_S": "6",
            "INTENTLOOP_INGEST__BATCH_SIZE": "500",
            **(extra_env or {}),
        },
    )
    return Stream(sim, sent, env, db, tmp_path / "logs")
