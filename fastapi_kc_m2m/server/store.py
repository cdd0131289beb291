"""The async store protocol behind shared state (introspection answers, and the replay and realm
caches to come), with the in-process implementation every deployment starts with.

Keys are digests, never tokens or proofs; values are JSON-compatible, so a store shared by many
replicas (Redis) can keep them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .cache import TokenCache

__all__ = ["MemoryStore", "Store", "StoreValue"]

#: What a store keeps: a JSON object.
StoreValue = dict[str, Any]


class Store(Protocol):
    """A bounded key-value store whose entries expire."""

    async def get(self, key: bytes) -> StoreValue | None:
        """The value under ``key``, unless it has expired."""

    async def put(self, key: bytes, value: StoreValue, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (nothing for ``ttl <= 0``)."""

    async def put_if_absent(self, key: bytes, value: StoreValue, ttl: float) -> bool:
        """Keep ``value`` only if no live entry holds ``key``; True when it was stored."""


class MemoryStore:
    """:class:`Store` in this process: at most ``maxsize`` entries, the oldest dropped first."""

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        self._entries: TokenCache[StoreValue] = TokenCache(maxsize, clock)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: bytes) -> StoreValue | None:
        return self._entries.get(key)

    async def put(self, key: bytes, value: StoreValue, ttl: float) -> None:
        if ttl > 0:
            self._entries.put(key, value, self._clock() + ttl)

    async def put_if_absent(self, key: bytes, value: StoreValue, ttl: float) -> bool:
        if ttl <= 0 or self._entries.get(key) is not None:
            return False
        self._entries.put(key, value, self._clock() + ttl)
        return True
