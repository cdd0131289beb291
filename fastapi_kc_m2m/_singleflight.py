"""One task in flight for a piece of work, shared by every waiter and safe from their cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Run a coroutine at most once at a time; later callers wait for the running one."""

    def __init__(self) -> None:
        self._task: asyncio.Task[T] | None = None

    @property
    def in_flight(self) -> bool:
        """Whether a run is under way on the current event loop."""
        return self._current() is not None

    def start(self, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """Start ``work`` unless a run is under way; return the running task either way."""
        task = self._current()
        if task is None:
            task = asyncio.get_running_loop().create_task(work())
            task.add_done_callback(self._finished)
            self._task = task
        return task

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Join the run under way or start one, and wait for its result.

        A cancelled waiter does not cancel the shared run (``asyncio.shield``).
        """
        return await asyncio.shield(self.start(work))

    def cancel(self) -> None:
        """Cancel the run under way, if any (used when the owner closes)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _current(self) -> asyncio.Task[T] | None:
        task = self._task
        # A task left behind by another (closed) event loop can never finish here: forget it.
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            self._task = task = None
        return task

    def _finished(self, task: asyncio.Task[T]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # mark as retrieved: background runs report through their own result
