"""Reliability under faults, asserted with exact counts: nothing lost, nothing counted twice."""

import pytest
from ingest_harness import make_stream

from intentloop.settings import StackPorts
from intentloop.stack import Endpoints, LocalStack
from intentloop.worker_processes import free_port, wait_until
from store.db import Database
from store.migrate import upgrade

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_the_worker_repeatedly_loses_and_doubles_nothing(
    db, pg_url, redis_url, kafka_bootstrap, tmp_path
):
    stream = make_stream(
        db=db,
        endpoints=Endpoints(kafka_bootstrap, pg_url, redis_url),
        tmp_path=tmp_path,
        searches=3000,
        seed=11,
    )
    kills = 0
    for fraction in (0.2, 0.45, 0.7):
        worker = stream.worker(f"ingest-{kills}")
        stream.wait_processed(int(stream.sent.total * fraction), worker)
        worker.kill9()
        kills += 1
    final = stream.worker("ingest-final")
    try:
        stream.wait_done(final)
    finally:
        final.stop()
    assert kills == 3
    stream.assert_exact()


def test_postgres_restart_mid_stream_is_ridden_out(redis_url, kafka_bootstrap, tmp_path):
    stack = LocalStack(
        tmp_path / "pg",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        ports=StackPorts(postgres_port=free_port()),
    )
    eps = stack.up(timeout_s=120)
    upgrade(eps.postgres_url)
    db = Database(eps.postgres_url)
    stream = make_stream(db=db, endpoints=eps, tmp_path=tmp_path, searches=3000, seed=12)
    worker = stream.worker("ingest")
    try:
        stream.wait_processed(stream.sent.total // 3, worker)
        db.dispose()
        stack.down()  # Postgres (and only it: Kafka and Redis are configured URLs here) goes away
        # It rides the outage out: backs off, retries, fails again, and is still running.
        wait_until(
            lambda: worker.log_path.read_text().count("store unavailable") >= 2,
            timeout_s=60,
            what="the worker to retry through the outage",
            proc=worker,
        )
        assert worker.alive()
        stack.up(timeout_s=120)
        stream.wait_done(worker)
        stream.assert_exact()
    finally:
        worker.stop()
        db.dispose()
        stack.down()


def test_a_worker_joining_and_one_leaving_mid_stream(db, pg_url, redis_url, kafka_bootstrap, tmp_path):
    stream = make_stream(
        db=db,
        endpoints=Endpoints(kafka_bootstrap, pg_url, redis_url),
        tmp_path=tmp_path,
        searches=4000,
        seed=13,
        partitions=4,
    )
    first = stream.worker("first")
    second = None
    try:
        stream.wait_processed(stream.sent.total // 5, first)
        second = stream.worker("second")  # joins: partitions are rebalanced over two workers
        stream.wait_processed(stream.sent.total // 2, second)
        first.stop()  # leaves cleanly: its partitions move to the second worker
        stream.wait_done(second)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    stream.assert_exact()
