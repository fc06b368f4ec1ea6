"""A machine whose CPU accounting a test writes, for the thread governor."""

from __future__ import annotations

import threading

from aiguilleur.backends.threads import CpuTimes, ThreadGovernor, ThreadTimes


class FakeMachine:
    """Cumulative CPU times as /proc/stat and the process would report them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0
        self.niced = 0.0
        self.own = 0.0
        self.thread = ThreadTimes(0.0, 0.0)
        self.readable = True
        # The engine reads it from its own thread while a test runs it.
        self._lock = threading.Lock()

    def run(
        self,
        seconds: float,
        ours: float,
        others: float = 0.0,
        niced: float = 0.0,
        waited: float = 0.0,
    ) -> None:
        """`seconds` pass with the engine on `ours` cores, others on `others` cores at
        normal priority and `niced` cores at nice > 0; the engine thread, when the
        engine works, waits for a core `waited` of the time."""
        with self._lock:
            self._run(seconds, ours, others, niced, waited)

    def _run(self, seconds: float, ours: float, others: float, niced: float, waited: float) -> None:
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others + niced) * seconds
        self.niced += niced * seconds
        if ours:
            self.thread = ThreadTimes(
                self.thread.ran + seconds * (1 - waited),
                self.thread.waited + seconds * waited,
            )

    def read(self) -> CpuTimes | None:
        with self._lock:
            if not self.readable:
                return None
            return CpuTimes(self.now, self.busy, self.niced, self.own)

    def read_thread(self) -> ThreadTimes | None:
        with self._lock:
            return self.thread if self.readable else None

    def governor(
        self, cores: int = 2, fixed: int | None = None, adapt: bool = True
    ) -> ThreadGovernor:
        """A governor that reads this machine (its clock included)."""
        return ThreadGovernor(
            cores,
            fixed,
            self.read,
            niced=False,
            clock=lambda: self.now,
            adapt=adapt,
            read_thread=self.read_thread,
        )
