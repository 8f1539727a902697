"""The live adapter registry in Redis: durable alias keys plus a pub/sub hint.

Pub/sub messages can be missed (a worker restarting, a network blip), so they are only a hint to
look now; the alias key is the truth every worker reconciles against on start and periodically.
Postgres keeps the audit trail and re-seeds Redis if Redis lost its keys (it may run without
persistence).

:class:`RedisRegistry` is the project's one Redis wrapper: besides the aliases it keeps the worker
heartbeats and the drift job's refresh request. The client stays private so that every command
goes through :meth:`RedisRegistry._call`, the one place a ``RedisError`` becomes
:class:`~store.exceptions.StoreUnavailableError`; key names come from :mod:`store.redis_keys`.
"""

import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import redis
from redis.exceptions import RedisError

from store import redis_keys
from store.exceptions import StoreUnavailableError

_WORKER_TTL_S = 30


class RedisRegistry:
    """Thin wrapper around one Redis client; connects lazily, translates Redis errors once."""

    def __init__(self, url: str, *, prefix: str = "intentloop") -> None:
        self._url = url
        self.prefix = prefix
        self._client: redis.Redis | None = None

    @property
    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self._url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            )
        return self._client

    @property
    def channel(self) -> str:
        return redis_keys.promotions_channel(self.prefix)

    def get_alias(self, alias: str) -> str | None:
        return self._call(lambda c: c.get(redis_keys.alias_key(self.prefix, alias)))

    def set_alias(self, alias: str, version: str) -> None:
        """Move the alias (atomic SET) and hint every subscribed worker to reconcile now."""
        payload = json.dumps({"alias": alias, "version": version, "at": time.time()})

        def _do(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.set(redis_keys.alias_key(self.prefix, alias), version)
            pipe.publish(self.channel, payload)
            pipe.execute()

        self._call(_do)

    def get_aliases(self, aliases: list[str]) -> dict[str, str | None]:
        """Several aliases in one round trip (MGET): one consistent read for a worker's reconcile."""
        if not aliases:
            return {}
        keys = [redis_keys.alias_key(self.prefix, a) for a in aliases]
        values = self._call(lambda c: c.mget(keys))
        return dict(zip(aliases, values, strict=True))

    def clear_alias(self, alias: str) -> None:
        """Remove the alias (a retired canary) and hint every subscribed worker to reconcile now."""
        payload = json.dumps({"alias": alias, "version": None, "at": time.time()})

        def _do(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.delete(redis_keys.alias_key(self.prefix, alias))
            pipe.publish(self.channel, payload)
            pipe.execute()

        self._call(_do)

    def report_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """Heartbeat: which version a worker serves, visible to ops while the worker lives."""
        key = redis_keys.worker_key(self.prefix, worker_id)
        self._call(lambda c: c.set(key, json.dumps(info), ex=_WORKER_TTL_S))

    def workers(self) -> dict[str, dict[str, Any]]:
        def _do(c: redis.Redis) -> dict[str, dict[str, Any]]:
            keys = sorted(c.scan_iter(redis_keys.worker_pattern(self.prefix)))
            values = c.mget(keys) if keys else []
            return {k.rsplit(":", 1)[-1]: json.loads(v) for k, v in zip(keys, values, strict=True) if v}

        return self._call(_do)

    def pubsub(self) -> Any:
        """A subscription to promotion hints (caller polls ``get_message``)."""

        def _do(c: redis.Redis) -> Any:
            ps = c.pubsub(ignore_subscribe_messages=True)
            ps.subscribe(self.channel)
            return ps

        return self._call(_do)

    def request_refresh(self, payload: Mapping[str, Any]) -> bool:
        """Ask the trainer's scheduler for a refresh; ``False`` if a request is already pending.

        SET NX: repeated drift alerts before the scheduler acts are one request, the first one's
        reason kept. The scheduler reads it (:meth:`pending_refresh`) and deletes it when it starts
        the refresh (:meth:`clear_refresh`), so a request made during that run is a new one.
        """
        key, value = redis_keys.refresh_key(self.prefix), json.dumps(dict(payload))
        return bool(self._call(lambda c: c.set(key, value, nx=True)))

    def pending_refresh(self) -> dict[str, Any] | None:
        """The pending refresh request's payload, or ``None`` when nobody asked for one."""
        raw = self._call(lambda c: c.get(redis_keys.refresh_key(self.prefix)))
        return None if raw is None else dict(json.loads(raw))

    def clear_refresh(self) -> None:
        """Claim the pending refresh request (the scheduler does this as its run starts)."""
        self._call(lambda c: c.delete(redis_keys.refresh_key(self.prefix)))

    def delete_keys(self, pattern: str = "*") -> int:
        """Delete this prefix's keys matching ``pattern`` (all by default); returns how many.

        For throw-away prefixes (a benchmark's, a test's) and for simulating a Redis that lost its
        keys; live deployments never call it.
        """

        def _do(c: redis.Redis) -> int:
            keys = list(c.scan_iter(f"{self.prefix}:{pattern}"))
            return int(c.delete(*keys)) if keys else 0

        return int(self._call(_do))

    def ping(self) -> None:
        self._call(lambda c: c.ping())

    def _call(self, fn: Any) -> Any:
        """Run ``fn`` with the client: the single place Redis errors are translated."""
        try:
            return fn(self._redis)
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis is unreachable ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
