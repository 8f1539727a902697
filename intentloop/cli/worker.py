"""``intentloop worker ingest|serve|predict``: the long-running processes of the loop."""

import json
import os
from dataclasses import asdict

import click

from intentloop.cli.common import runtime
from intentloop.exceptions import CommandFailedError
from serving.settings import ServeSettings


@click.group()
def worker() -> None:
    """Long-running workers."""


@worker.command("ingest")
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Stop once every partition is read to its end and committed (a backfill); prints a JSON summary.",
)
def worker_ingest(until_caught_up: bool) -> None:
    """Ingestion worker: search.queries + search.feedback -> Postgres weak labels; SIGTERM stops it.

    With --until-caught-up it stops by itself when the consumer group's lag is zero (see
    `intentloop status`), exit code 130 if a signal stopped it first.
    """
    from streams.ingestion.worker import run_ingest_worker

    rt = runtime()
    db = rt.ready_db()
    rt.ready_topics()
    counters = run_ingest_worker(
        rt.endpoints.kafka_bootstrap, rt.settings.ingest, db, until_caught_up=until_caught_up
    )
    if until_caught_up:
        click.echo(json.dumps(asdict(counters)))
        if not counters.caught_up:
            raise CommandFailedError("interrupted", "stopped before catching up")


@worker.command("serve")
@click.option("--port", type=int, default=None, help="Overrides INTENTLOOP_SERVE__PORT.")
@click.option("--worker-id", default=None, help="Name shown in the registry (default host-pid).")
def worker_serve(port: int | None, worker_id: str | None) -> None:
    """Inference worker: POST /v1/intent, hot-swaps to each promoted adapter."""
    rt = runtime()
    serve = rt.settings.serve if port is None else rt.settings.serve.model_copy(update={"port": port})
    _passive_openmp(serve)
    from serving.worker import run_serve

    run_serve(rt.db, rt.registry, rt.artifacts, rt.settings.model, serve, worker_id=worker_id)


@worker.command("predict")
@click.option("--worker-id", default=None, help="Name shown in the registry (default host-pid).")
def worker_predict(worker_id: str | None) -> None:
    """Stream inference agent: search.queries -> intent.predictions, hot-swapping like `worker serve`."""
    rt = runtime()
    s = rt.settings
    _passive_openmp(s.serve)
    from serving.agent import run_predict_agent

    rt.ready_topics()
    run_predict_agent(
        rt.endpoints.kafka_bootstrap, rt.db, rt.registry, rt.artifacts, s.model, s.serve, worker_id=worker_id
    )


def _passive_openmp(serve: ServeSettings) -> None:
    """Before torch loads: idle OpenMP threads sleep instead of spinning. A worker's model thread
    shares the cores with its event loop, and threads spinning for ~100 ms after each micro-batch
    steal exactly the CPU the next requests need (p99 at half rate 67 -> 45 ms in `bench serve`).
    An explicit OMP_WAIT_POLICY in the environment wins."""
    if serve.omp_passive:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
