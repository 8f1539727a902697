"""Micro-batching: concurrent requests share one model call.

A forward pass over 32 queries costs little more than over one on CPU, so under load grouping is
where throughput comes from. Requests go into an asyncio queue; one collector task takes the first,
then whatever arrives within ``max_wait_s`` (up to ``max_queries`` queries, never splitting a
request), and runs the whole group with one call on a single model thread. While that call runs the
queue fills, so a busy worker batches without waiting at all and an idle one adds at most
``max_wait_s`` to a request. One model thread also means at most one batch in flight: a routing
flip always lands between two groups.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")  # a request
A = TypeVar("A")  # its answer (or the exception to raise for it)
T = TypeVar("T")


class MicroBatcher(Generic[R, A]):
    """Groups requests submitted from one event loop; ``run`` answers a group, in order."""

    def __init__(
        self,
        run: Callable[[list[R]], list[A | Exception]],
        *,
        size: Callable[[R], int],
        max_queries: int,
        max_wait_s: float,
    ) -> None:
        self._run = run
        self._size = size
        self._max_queries = max_queries
        self._max_wait_s = max_wait_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._queue: asyncio.Queue[tuple[R, asyncio.Future[A]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set while no request waits to be grouped: low-priority work submitted now queues behind
        # at most the group being computed (and delays the next group by itself alone).
        self._idle = threading.Event()
        self._idle.set()

    async def submit(self, request: R) -> A:
        """The answer to ``request``, computed in a group with whatever else is waiting."""
        queue = self._ensure_running()
        future: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        await queue.put((request, future))
        self._idle.clear()
        return await future

    def _ensure_running(self) -> asyncio.Queue[tuple[R, asyncio.Future[A]]]:
        # Started lazily on the loop that serves requests (test clients may run several loops in turn).
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._collect(self._queue), name="micro-batcher")
        return self._queue

    async def _collect(self, queue: asyncio.Queue[tuple[R, asyncio.Future[A]]]) -> None:
        loop = asyncio.get_running_loop()
        carry: tuple[R, asyncio.Future[A]] | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            group = [first]
            total = self._size(first[0])
            deadline = loop.time() + self._max_wait_s
            while total < self._max_queries:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                n = self._size(item[0])
                if total + n > self._max_queries:
                    carry = item  # starts the next group: requests are never split
                    break
                group.append(item)
                total += n
            if carry is None and queue.empty():
                self._idle.set()
            live = [(r, f) for r, f in group if not f.done()]  # a cancelled client needs no answer
            if not live:
                continue
            try:
                answers = await loop.run_in_executor(self._executor, self._run, [r for r, _ in live])
            except Exception as exc:  # a bug in the model call: fail this group, keep serving
                log.exception("micro-batch of %d requests failed", len(live))
                answers = [exc] * len(live)
            for (_, fut), ans in zip(live, answers, strict=True):
                if fut.done():
                    continue
                if isinstance(ans, Exception):
                    fut.set_exception(ans)
                else:
                    fut.set_result(ans)

    def call(self, fn: Callable[[], T], *, defer_s: float = 0.0) -> T:
        """Run ``fn`` on the model thread from any other thread and wait for it: how explanations
        put their model calls in line between micro-batches instead of running beside them.

        ``defer_s``: low priority. ``fn`` waits until no request waits to be grouped (or ``defer_s``
        has passed, so it cannot starve under constant load), then queues behind at most the group
        being computed: the next group is delayed by this one call, never by a whole explanation.
        """
        self.wait_idle(defer_s)
        return self._executor.submit(fn).result()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block (another thread) until no request waits to be grouped, at most ``timeout_s``."""
        return timeout_s <= 0 or self._idle.wait(timeout_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)
