"""An inference worker process: model host + alias watcher + HTTP API under uvicorn."""

import logging
import os
import socket

import uvicorn

from serving.api import create_api
from serving.host import ModelHost
from serving.settings import ServeSettings
from serving.watcher import AliasWatcher
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


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
    import torch

    # Two cores: one intra-op thread per request batch keeps concurrent batches from thrashing.
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    wid = worker_id or default_worker_id()
    host = ModelHost(artifacts, model)
    watcher = AliasWatcher(host, db, registry, worker_id=wid, interval_s=serve.reconcile_interval_s)
    watcher.start()
    api = create_api(host, serve, worker_id=wid)
    log.info("worker %s listening on %s:%d", wid, serve.host, serve.port)
    try:
        uvicorn.run(api, host=serve.host, port=serve.port, log_level="warning", access_log=False)
    finally:
        watcher.stop()
