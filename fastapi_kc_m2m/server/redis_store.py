"""A :class:`~.store.Store` on Redis or Valkey (redis-py's ``redis.asyncio``), shared by every replica.

Needs the ``fastapi_kc_m2m[redis]`` extra; nothing else in the package imports ``redis``. Keys are
``prefix + hex(digest)``, never a token or proof; values are JSON objects. Every operation is one
single-key command (``GET``, ``SET … PX``, ``SET … NX PX``: RFC 9449 §11.1's replay primitive), so a
Redis Cluster serves them unchanged.

Each command is bounded by ``timeout``. A failure or a timeout marks the store down for
:data:`DOWN_FOR` seconds: operations then raise :class:`~.store.StoreUnavailable` at once, with no round
trip, and the next one after that tries again, so a restarted Redis is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .._jose.strictjson import loads_object
from .store import StoreUnavailable, StoreValue

__all__ = ["DOWN_FOR", "RedisStore"]

#: Seconds the store counts as down after a failed command.
DOWN_FOR = 1.0
_T = TypeVar("_T")


class RedisStore:
    """:class:`~.store.Store` on a Redis client: ``redis.asyncio.Redis`` or ``RedisCluster``."""

    def __init__(self, client: Redis | RedisCluster, *, prefix: str = "kc-m2m:", timeout: float = 0.25) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._down_until = -math.inf

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float) -> RedisStore:
        """A store on its own client for ``url`` (``redis://``, ``rediss://``, ``unix://``); no I/O yet. A
        command failing on a connection is retried once at once, on a new one (Redis restarted meanwhile)."""
        client = Redis.from_url(url, retry=Retry(NoBackoff(), 1))  # each command is bounded by the timeout
        return cls(client, prefix=prefix, timeout=timeout)

    async def aclose(self) -> None:
        """Close the client's connections (a later command opens new ones)."""
        await self._client.aclose()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def get(self, key: bytes) -> StoreValue | None:
        raw = await self._run(lambda: self._client.get(self._key(key)))
        if not isinstance(raw, bytes):
            return None
        try:
            return loads_object(raw)
        except ValueError:  # not ours: as good as absent
            return None

    async def put(self, key: bytes, value: StoreValue, ttl: float) -> None:
        if ttl > 0:
            await self._run(lambda: self._client.set(self._key(key), json.dumps(value), px=_milliseconds(ttl)))

    async def put_if_absent(self, key: bytes, value: StoreValue, ttl: float) -> bool:
        if ttl <= 0:
            return False
        stored = await self._run(
            lambda: self._client.set(self._key(key), json.dumps(value), nx=True, px=_milliseconds(ttl))
        )
        return stored is True

    async def inspect(self) -> list[str]:
        """A warning when Redis may evict keys before their TTL (replays become possible); ``CONFIG`` being
        forbidden (managed Redis, ACLs) is tolerated."""
        await self._run(self._client.ping)
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._client.config_get("maxmemory-policy")
        except (RedisError, OSError):  # the PING answered: CONFIG is refused, not the store down
            return []
        return [
            f"Redis maxmemory-policy is {policy}: keys may be evicted before they expire, so a replayed DPoP"
            " proof could be accepted; use noeviction (a full Redis then refuses writes: DPoP requests get 503)"
            for policy in sorted(_policies(answer))
            if policy != "noeviction"
        ]

    def _key(self, key: bytes) -> str:
        return self._prefix + key.hex()

    async def _run(self, command: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``command`` within the timeout; raise :class:`StoreUnavailable` while down or when it fails."""
        wait = self._down_until - time.monotonic()
        if wait > 0:
            raise StoreUnavailable(wait)
        try:
            async with asyncio.timeout(self._timeout):
                return await command()
        except (RedisError, OSError):  # TimeoutError is an OSError
            self._down_until = time.monotonic() + DOWN_FOR
            raise StoreUnavailable(DOWN_FOR) from None


def _milliseconds(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _policies(answer: Any) -> set[str]:
    """The ``maxmemory-policy`` values in a ``CONFIG GET`` answer: one node's mapping, or one per node."""
    if not isinstance(answer, dict):
        return set()
    policy = answer.get("maxmemory-policy", answer.get(b"maxmemory-policy"))
    if policy is not None:
        return {policy.decode() if isinstance(policy, bytes) else str(policy)}
    return set().union(*(_policies(node) for node in answer.values()))
