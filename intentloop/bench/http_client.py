"""A minimal keep-alive HTTP/1.1 client for the serving benchmarks, and their percentile.

A few microseconds of CPU per request instead of a general HTTP client's hundreds: on a 2-core
machine the load generator shares the cores with the worker it measures.
"""

import asyncio
import contextlib
import json
from typing import Any


class Conn:
    """One keep-alive HTTP/1.1 connection posting JSON; just enough protocol for a benchmark."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """(status, JSON body) — status 0 when the connection failed (then it reconnects next time)."""
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self._reader is not None
            self._writer.write(head + data)
            raw = await self._reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = next(
                int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length"
            )
            payload = await self._reader.readexactly(length)
            return status, json.loads(payload)
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            await self.close()
            return 0, None

    async def close(self) -> None:
        w, self._writer, self._reader = self._writer, None, None
        if w is not None:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank, NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
