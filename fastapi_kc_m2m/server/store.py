"""The async store protocol behind shared state (introspection answers, the DPoP proofs seen), with
the in-process implementation every deployment starts with; :mod:`.redis_store` shares it among replicas.

Keys are digests, never tokens or proofs; values are JSON-compatible, so a store shared by many
replicas (Redis) can keep them as they are. A shared store that cannot answer raises
:class:`StoreUnavailable`: the DPoP replay check then fails closed (503), introspection asks Keycloak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .cache import TokenCache

__all__ = ["MemoryStore", "Store", "StoreUnavailable", "StoreValue"]

#: What a store keeps: a JSON object.
StoreValue = dict[str, Any]


class StoreUnavailable(Exception):
    """The store cannot answer now (down, slow or refusing); ``retry_after`` is when to try again, in
    seconds. The message is a fixed phrase."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__("store unavailable")


class Store(Protocol):
    """A bounded key-value store whose entries expire; operations may raise :class:`StoreUnavailable`."""

    @property
    def available(self) -> bool:
        """False while the store is known not to answer (for readiness probes)."""

    async def inspect(self) -> list[str]:
        """Set-up problems worth a warning, checked at start-up (raises :class:`StoreUnavailable`)."""

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

    @property
    def available(self) -> bool:
        return True

    async def inspect(self) -> list[str]:
        return []

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
