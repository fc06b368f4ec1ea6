"""Waiting on what a real editor shows, polled: the editors answer on their own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Generous: the tiny model answers in well under a second, but CI machines are shared.
PATIENCE = 120.0


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = PATIENCE, every: float = 0.05
) -> T:
    """The first true value `probe` returns; fails naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}; last saw {value!r}")
        time.sleep(every)
