"""A real inference worker's HTTP stack with one extra route that holds a request in flight.

Run as a child process by tests/integration/test_serving_shutdown.py:

    python serving_shutdown_app.py ENCODER_DIR WORK_DIR PORT DRAIN_S GRACEFUL_TIMEOUT_S

The app is ``serving.api.create_api`` over a host serving a synthetic champion (so ``/readyz`` is
200), served by ``serving.worker.serve_http`` exactly as ``worker serve`` runs it. The extra route
``GET /test/hold`` touches WORK_DIR/entered, then answers 200 only once WORK_DIR/release exists:
a request the test knows is in flight when it sends SIGTERM.
"""

import asyncio
import sys
from pathlib import Path

from serving_helpers import make_host, make_versions

from serving.adapters import SharedBase
from serving.api import create_api
from serving.settings import ServeSettings
from serving.worker import serve_http
from store.artifacts import ArtifactStore

_POLL_S = 0.01


def main(encoder_dir: Path, work: Path, port: int, drain_s: float, graceful_timeout_s: int) -> None:
    store = ArtifactStore(work / "artifacts")
    (version,) = make_versions(store, encoder_dir, [1])
    host = make_host(store, SharedBase(encoder_dir))
    host.assign("champion", version)
    api = create_api(host, ServeSettings(), worker_id="shutdown-test")

    @api.get("/test/hold")
    async def hold() -> dict[str, str]:
        (work / "entered").touch()
        while not (work / "release").exists():
            await asyncio.sleep(_POLL_S)
        return {"held": "released"}

    serve_http(api, "127.0.0.1", port, drain_s=drain_s, graceful_timeout_s=graceful_timeout_s)


if __name__ == "__main__":
    encoder, work_dir, port_, drain, timeout = sys.argv[1:]
    main(Path(encoder), Path(work_dir), int(port_), float(drain), int(timeout))
