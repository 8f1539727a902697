"""An inference worker process: shared base + model host + alias watcher + HTTP API under uvicorn."""

import gc
import logging
import os
import signal
import socket
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

from serving.adapters import Backend, SharedBase
from serving.api import Admin, create_api, drain
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.settings import ServeSettings
from serving.watcher import AliasWatcher
from store.artifacts import ArtifactStore
from store.db import Database
from store.registry import RedisRegistry
from trainer.onnx_graph import GraphOptions
from trainer.settings import ModelSettings

log = logging.getLogger(__name__)

# After SIGTERM, how long the requests in flight may take to finish before uvicorn cancels them, in
# seconds. An intent request takes milliseconds and an explanation is bounded by its budget, so only
# a stuck one ever reaches it; it bounds the exit, which must come before the SIGKILL: Kubernetes'
# terminationGracePeriodSeconds > preStop sleep + this (deploy/k8s/base/inference.yaml, tested).
GRACEFUL_TIMEOUT_S = 25
_STARTUP_FAILURE = 3  # uvicorn.run's exit status when the server never started (port taken...)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def configure_torch(serve: ServeSettings) -> None:
    """One model thread runs every micro-batch, so it may use every core (or ``torch_threads``)."""
    import torch

    torch.set_num_threads(serve.torch_threads or max(1, os.cpu_count() or 1))


def backend_of(serve: ServeSettings) -> Backend:
    """The backend the settings ask for, as this machine can run it. ONNX Runtime's idle threads
    sleep when OpenMP's do (``omp_passive``). On a CUDA machine the graph runs on ONNX Runtime's
    CUDA provider in fp32 (dynamically quantised int8 kernels are CPU kernels); without that
    provider (the CPU ``onnxruntime`` package) PyTorch on CUDA answers rather than the graph on
    the CPU beside an idle GPU."""
    import onnxruntime as ort
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    kind, int8 = serve.backend, serve.int8
    if kind == "onnx" and device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            log.warning(
                "CUDA is present but ONNX Runtime has no CUDA provider (install onnxruntime-gpu): "
                "serving with PyTorch on CUDA"
            )
            kind = "torch"
        int8 = False
    graphs = GraphOptions(threads=serve.onnx_threads, spin=not serve.omp_passive, device=device)
    return Backend(kind, int8, graphs)


def build_host(artifacts: ArtifactStore, model: ModelSettings, serve: ServeSettings) -> ModelHost:
    """The model host a worker (HTTP or stream) serves with, configured from the settings."""
    return ModelHost(
        artifacts,
        SharedBase(model.base_dir, backend=backend_of(serve)),
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
        serve_http(api, serve.host, serve.port, drain_s=serve.drain_s)
    finally:
        watcher.stop()


def serve_http(
    api: FastAPI,
    host: str,
    port: int,
    *,
    drain_s: float = 0.0,
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S,
) -> None:
    """Run ``api`` under uvicorn until a signal, then shut down without dropping a request.

    On SIGTERM ``/readyz`` answers 503 at once (``serving.api.drain``); after ``drain_s`` seconds
    of still serving everything (0: at once) uvicorn closes the listener, lets the requests in
    flight finish for at most ``graceful_timeout_s``, runs the app's shutdown (the watcher's last
    flush of served-prediction counts) and re-raises the signal. Under Kubernetes the pod's preStop
    sleep plays the part of ``drain_s``: the endpoints leave the Service before SIGTERM arrives.
    """
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful_timeout_s,
    )
    server = _DrainingServer(config, api, drain_s=drain_s)
    server.run()
    if not server.started:
        raise SystemExit(_STARTUP_FAILURE)  # uvicorn has logged why (as uvicorn.run does)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, withdrawing readiness the moment shutdown starts.

    ``handle_exit`` is uvicorn's signal handler: it marks the app draining, then hands over to
    uvicorn's own graceful shutdown, delayed by ``drain_s`` for the first SIGTERM. A second signal,
    or SIGINT (Ctrl-C at a terminal), does not wait.
    """

    def __init__(self, config: uvicorn.Config, api: FastAPI, *, drain_s: float) -> None:
        super().__init__(config)
        self._api = api
        self._drain_s = drain_s
        self._delayed: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain(self._api)
        if sig == signal.SIGTERM and self._drain_s > 0 and self._delayed is None:
            log.info("SIGTERM: not ready; draining for %.1f s before closing the listener", self._drain_s)
            self._delayed = threading.Timer(self._drain_s, super().handle_exit, (sig, frame))
            self._delayed.daemon = True
            self._delayed.start()
            return
        if self._delayed is not None:
            self._delayed.cancel()
        super().handle_exit(sig, frame)
