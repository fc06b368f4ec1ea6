"""Background tasks that are neither lost nor silent.

The event loop keeps only a weak reference to a task, so a task nobody holds can vanish
mid-run, and an exception in a task nobody awaits is reported, if ever, at exit. Every
background task goes through a TaskSet, which holds it until it ends and logs its failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("task.failed name=%s error=%r", task.get_name(), error, exc_info=error)

    async def wait(self, timeout: float) -> None:
        """Until every task now running has ended, or `timeout` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)
