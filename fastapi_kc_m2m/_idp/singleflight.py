"""One task in flight for a piece of work, shared by every waiter and safe from their cancellation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class KeyedSingleFlight(Generic[K, T]):
    """Run at most one coroutine at a time per key; later callers with that key wait for the running one.

    A run is forgotten as soon as it ends, so memory follows the number of runs under way.
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def in_flight(self, key: K) -> bool:
        """Whether a run for ``key`` is under way on the current event loop."""
        return self._current(key) is not None

    def start(self, key: K, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """Start ``work`` unless a run for ``key`` is under way; return the running task either way."""
        task = self._current(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(work())
            task.add_done_callback(functools.partial(self._finished, key))
            self._tasks[key] = task
        return task

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Join the run for ``key`` under way or start one, and wait for its result.

        A cancelled waiter does not cancel the shared run (``asyncio.shield``).
        """
        return await asyncio.shield(self.start(key, work))

    async def wait(self) -> None:
        """Wait until no run is under way on this event loop, whatever their outcome."""
        while tasks := [task for task in self._tasks.values() if task.get_loop() is asyncio.get_running_loop()]:
            await asyncio.wait(tasks)

    def cancel(self) -> None:
        """Cancel every run under way (used when the owner closes)."""
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            task.cancel()

    def _current(self, key: K) -> asyncio.Task[T] | None:
        task = self._tasks.get(key)
        # A task left behind by another (closed) event loop can never finish here: forget it.
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            del self._tasks[key]
            task = None
        return task

    def _finished(self, key: K, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark as retrieved: background runs report through their own result


class SingleFlight(Generic[T]):
    """Run a coroutine at most once at a time; later callers wait for the running one."""

    def __init__(self) -> None:
        self._flights: KeyedSingleFlight[None, T] = KeyedSingleFlight()

    @property
    def in_flight(self) -> bool:
        """Whether a run is under way on the current event loop."""
        return self._flights.in_flight(None)

    def start(self, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """Start ``work`` unless a run is under way; return the running task either way."""
        return self._flights.start(None, work)

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Join the run under way or start one, and wait for its result (waiters' cancellation is shielded)."""
        return await self._flights.run(None, work)

    async def wait(self) -> None:
        """Wait until no run is under way, whatever its outcome."""
        await self._flights.wait()

    def cancel(self) -> None:
        """Cancel the run under way, if any (used when the owner closes)."""
        self._flights.cancel()
