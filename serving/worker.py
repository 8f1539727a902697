"""An inference worker process: shared base + model host + alias watcher + HTTP API under uvicorn."""

import gc
import logging
import os
import socket
import threading

import uvicorn

from serving.adapters import SharedBase
from serving.api import Admin, create_api
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.settings import ServeSettings
from serving.watcher import AliasWatcher
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def configure_torch(serve: ServeSettings) -> None:
    """One model thread runs every micro-batch, so it may use every core (or ``torch_threads``)."""
    import torch

    torch.set_num_threads(serve.torch_threads or max(1, os.cpu_count() or 1))


def build_host(artifacts: ArtifactStore, model: ModelSettings, serve: ServeSettings) -> ModelHost:
    """The model host a worker (HTTP or stream) serves with, configured from the settings."""
    return ModelHost(
        artifacts,
        SharedBase(model.base_dir),
        markets=serve.markets,
        canary_share=serve.canary_share,
        keep_warm=serve.keep_warm,
        metrics=ServingMetrics(),
    )


def freeze_startup_heap() -> None:
    """Move everything start-up allocated (libraries, the base encoder) out of the collector's sight.

    A worker holds ~425,000 long-lived objects once torch, transformers and the base are loaded. A
    full (generation 2) collection walks all of them: 300-500 ms on a 2-core machine, during which
    no request is answered. When one happened to fall inside the load it doubled request p99 in
    ``bench swap`` (issue 12: ~270 -> 550-650 ms, whether one fell there depended on how many
    objects start-up left pending). ``gc.freeze`` puts them in the permanent generation, so later
    collections only walk what serving allocates (adapter versions, requests): milliseconds.
    Frozen objects are still freed by reference counting; only cycles among them are never
    collected, and start-up state lives as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def start_watched_host(
    db: Database,
    registry: RedisRegistry,
    artifacts: ArtifactStore,
    model: ModelSettings,
    serve: ServeSettings,
    worker_id: str,
) -> tuple[ModelHost, AliasWatcher]:
    """A model host kept on the current aliases by a started watcher: what every worker kind runs."""
    configure_torch(serve)
    host = build_host(artifacts, model, serve)
    freeze_startup_heap()
    watcher = AliasWatcher(
        host,
        db,
        registry,
        worker_id=worker_id,
        interval_s=serve.reconcile_interval_s,
        refused_retry_s=serve.refused_retry_s,
    )
    watcher.start()
    return host, watcher


def _warm_explainer(method: str) -> None:
    """The default explanation method, ready before its first request (a failure only costs time)."""
    from serving.explain.methods import warm_up

    try:
        warm_up(method)
    except Exception:  # the first /v1/explain will import it again and report any real error
        log.exception("could not warm up the %s explainer", method)


def run_serve(
    db: Database,
    registry: RedisRegistry,
    artifacts: ArtifactStore,
    model: ModelSettings,
    serve: ServeSettings,
    *,
    worker_id: str | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. Not ready (503) until the champion adapter is loaded."""
    wid = worker_id or default_worker_id()
    host, watcher = start_watched_host(db, registry, artifacts, model, serve, wid)
    threading.Thread(
        target=_warm_explainer, args=(serve.explain.method,), name="explain-warm-up", daemon=True
    ).start()
    token = serve.admin_token.get_secret_value() if serve.admin_token else None
    admin = Admin(db, registry, token, on_move=watcher.poke)
    api = create_api(host, serve, worker_id=wid, admin=admin, on_shutdown=watcher.stop)
    log.info("worker %s listening on %s:%d", wid, serve.host, serve.port)
    try:
        uvicorn.run(api, host=serve.host, port=serve.port, log_level="warning", access_log=False)
    finally:
        watcher.stop()
