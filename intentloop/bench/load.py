"""The HTTP load `bench serve` offers a worker: sequential, closed-loop and open-loop clients.

The clients speak minimal HTTP/1.1 over keep-alive connections (``http_client.Conn``: a few
microseconds of CPU per request instead of a general HTTP client's hundreds), since on a 2-core
machine the load generator shares the cores with the worker it measures.
"""

import asyncio
import time
from dataclasses import dataclass

from intentloop.bench.http_client import Conn


async def batch1(port: int, queries: list[str], n: int) -> list[float]:
    conn, lat = Conn(port), []
    for i in range(n):
        t = time.perf_counter()
        status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
        if status == 200:
            lat.append((time.perf_counter() - t) * 1000)
    await conn.close()
    return lat


async def closed_loop(
    port: int, queries: list[str], clients: int, seconds: float
) -> tuple[int, int, list[float]]:
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    failed = 0

    async def client(k: int) -> None:
        nonlocal failed
        conn, i = Conn(port), k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
            i += clients
            if status == 200:
                lat.append((time.perf_counter() - t) * 1000)
            else:
                failed += 1
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return len(lat), failed, lat if time.perf_counter() - t0 > 0 else []


@dataclass(frozen=True)
class Explained:
    """Phase 7: the intent answers at half rate while explanations ran, and the explanations."""

    intent_ms: list[float]
    intent_failed: int
    explain_ms: list[float]
    busy: int  # 429: every explanation slot taken
    failed: int  # any other non-200


async def mixed(
    port: int, queries: list[str], rate: float, seconds: float, pool: int, clients: int
) -> Explained:
    """The half-rate open loop with ``clients`` explanation clients running beside it."""
    short = [q for q in queries if len(q.split()) <= 8] or queries
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    counts = {"busy": 0, "failed": 0}

    async def explainer(k: int) -> None:
        conn, i = Conn(port), k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = await conn.post("/v1/explain", {"query": short[i % len(short)]})
            i += clients
            if status == 200:
                lat.append((time.perf_counter() - t) * 1000)
            else:  # 429: every slot busy; anything else is a failure; either way, back off a little
                counts["busy" if status == 429 else "failed"] += 1
                await asyncio.sleep(0.05)
        await conn.close()

    explaining = [asyncio.create_task(explainer(k)) for k in range(clients)]
    intent_ms, intent_failed = await open_loop(port, queries, rate, seconds, pool)
    await asyncio.gather(*explaining)
    return Explained(intent_ms, intent_failed, lat, counts["busy"], counts["failed"])


async def open_loop(
    port: int, queries: list[str], rate: float, seconds: float, pool: int
) -> tuple[list[float], int]:
    """Requests sent on a fixed schedule (``rate``/s), each on a free connection of ``pool``."""
    conns: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(Conn(port))
    lat: list[float] = []
    failed = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal failed
        conn = await conns.get()
        status, _ = await conn.post("/v1/intent", {"query": queries[i % len(queries)]})
        conns.put_nowait(conn)
        if status == 200:
            lat.append((time.perf_counter() - scheduled) * 1000)  # from when it should have been sent
        else:
            failed += 1

    tasks = []
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    while not conns.empty():
        await conns.get_nowait().close()
    return lat, failed


def batch_mean(port: int) -> float | None:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line.startswith("intentloop_batch_queries_sum ") or line.startswith(
            "intentloop_batch_queries_count "
        ):
            name, value = line.split(" ")
            values[name] = float(value)
    count = values.get("intentloop_batch_queries_count", 0.0)
    return round(values.get("intentloop_batch_queries_sum", 0.0) / count, 2) if count else None
