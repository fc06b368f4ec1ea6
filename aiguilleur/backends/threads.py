"""How many threads the engine runs, given what else the machine is doing, and whether
its background work may run at all.

llama.cpp's threads meet at a barrier after every operation of the graph (hundreds per
token) and wait there by spinning. When other programs keep the cores busy (a build, a
test run, another model), a descheduled thread holds every other one spinning through its
time slice: on 2 cores beside one busy process, 2 threads generated 2-2.6x slower than 1,
and beside another llama.cpp process 10x; the daemon, in a scheduling group of its own
(a session of its own, Linux's autogroup), got a third of a core for one of its threads
and took 2.7 s per token. One thread has no barrier at all. So the engine runs on the
cores other programs leave it, measured from the kernel's own accounting: the busy time of
the cores this process may run on (/proc/stat, steal included: a VM's host took it),
minus this process's own CPU time. Programs at a lower priority (nice > 0) do not count:
the scheduler gives the engine nearly all the CPU they would take.

Background work (prefill, prefetch) runs only on a core nobody else wants: it pauses when
the engine's thread waited for a core (the kernel's run-queue accounting of the thread,
/proc/thread-self/schedstat), or, while the engine is idle, when other programs leave no
core free. Beside one build process on 2 cores it goes on, on the other core.

The measure is taken at least every quarter of a second while the engine works (between
evaluation slices and between tokens) and when a request starts, so a build that starts
mid-suggestion is seen within that suggestion, and an idle machine gets every core back at
the next request. Where there is no /proc/stat (macOS, Windows), the engine keeps every
core, as before. The answers do not depend on the count: llama.cpp computes each output
row on one thread, and the logits at 1 and 2 threads were bit for bit the same.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import msgspec

# A shorter window reads too few of the kernel's 10 ms ticks to tell half a core apart.
MIN_WINDOW_S = 0.25
# Other work using this much of a core costs the engine a thread; a thread comes back only
# once it uses clearly less, so that a load near the edge does not flip it every request.
DROP_AT = 0.5
RAISE_BELOW = 0.3
# Background work (prefill, prefetch) runs on a core other programs leave free, and
# pauses when it would take one from them: when the engine's thread waited this share of
# the time it wanted a core (the kernel's run-queue accounting), or, while the engine did
# not run, when other programs left less than this much of a core free.
WAITED_AT = 0.2
FREE_AT_LEAST = 0.7
# A window in which the engine thread ran (or waited to) less than this says nothing of
# its waits.
MIN_ENGINE_S = 0.05
# Niced work (nice > 0) takes almost nothing from the engine when the scheduler weighs the
# two against each other, and a full share when each is in a group of its own: Linux gives
# each session (the autogroup) or cgroup an equal share whatever the nice values inside
# it, so a `nice make` started in a terminal competes fully with the editor's server (beside
# one, the engine at 2 threads took 18x longer). Which holds is seen, not assumed: niced
# work counts as competing until a window run with the threads it would take shows the
# engine thread did not wait for a core; such a window is tried while niced work alone
# costs the engine threads, after PROBE_EVERY_S, then twice as long after each try that
# found it competing (a try costs: the spinning it tests for), up to PROBE_MAX_S.
NICED_PRESENT = 0.3
PROBE_EVERY_S = 10.0
PROBE_MAX_S = 300.0


class CpuTimes(msgspec.Struct, frozen=True):
    """Cumulative CPU seconds at one moment."""

    at: float  # time.monotonic()
    busy: float  # the usable cores ran anything (idle and iowait aside; steal counted)
    niced: float  # of `busy`, programs at a lower priority (nice > 0)
    own: float  # this process, every thread


class ThreadTimes(msgspec.Struct, frozen=True):
    """Cumulative seconds one thread ran, and waited on a run queue for a core."""

    ran: float
    waited: float


class ThreadChoice(msgspec.Struct, frozen=True):
    """What the engine runs with now, and why (shown by `aiguilleur/status` and doctor)."""

    threads: int
    cores: int  # the cores this process may run on
    reason: str
    others: float | None = None  # cores other work used in the last window; None: unmeasured
    # Background work would take a core other programs use: it pauses.
    contended: bool = False
    waited: float | None = None  # share of the last window the engine thread waited
    changes: int = 0  # times the thread count changed since the engine started


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a
    container's cpuset), which is what llama.cpp's threads can use. llama-cpp-python's
    own default, half of all cores, left one of two cores idle while the user waited."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def _affinity() -> frozenset[int] | None:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def proc_stat_reader(stat: str = "/proc/stat") -> Callable[[], CpuTimes | None]:
    """Reads the CPU times of the cores this process may run on, from the kernel's
    per-core lines (user nice system idle iowait irq softirq steal ...: clock ticks)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpus = _affinity()

    def read() -> CpuTimes | None:
        try:
            with open(stat, encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        busy = niced = 0
        seen = False
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            try:
                index = int(name[3:])
                fields = [int(v) for v in rest.split()]
            except ValueError:
                continue
            if (cpus is not None and index not in cpus) or len(fields) < 8:
                continue
            user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
            busy += user + nice + system + irq + softirq + steal
            niced += nice
            seen = True
        if not seen:
            return None
        return CpuTimes(time.monotonic(), busy / tick, niced / tick, time.process_time())

    return read


def own_thread_reader() -> Callable[[], ThreadTimes | None]:
    """Reads the calling thread's scheduler times (/proc/thread-self/schedstat: ns run,
    ns waited on a run queue, time slices); None where the kernel keeps none."""

    def read() -> ThreadTimes | None:
        try:
            with open("/proc/thread-self/schedstat", encoding="ascii") as f:
                ran, waited, *_ = (int(v) for v in f.read().split())
        except (OSError, ValueError):
            return None
        return ThreadTimes(ran / 1e9, waited / 1e9)

    return read


class ThreadGovernor:
    """Chooses the engine's thread count from what other programs use of its cores.

    `update()` measures the window since its last measure (when at least MIN_WINDOW_S
    long) and returns the choice; the engine applies a changed count between two
    evaluations. `fixed` (`[local] n_threads`) keeps the count; the load is measured all
    the same, for background work. Without `adapt`, nothing is measured: the count is
    `fixed` or every core, and background work never pauses.
    """

    def __init__(
        self,
        cores: int,
        fixed: int | None = None,
        read: Callable[[], CpuTimes | None] | None = None,
        niced: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        adapt: bool = True,
        read_thread: Callable[[], ThreadTimes | None] | None = None,
    ) -> None:
        self.cores = max(1, cores)
        self._read = read if read is not None else proc_stat_reader()
        # Read from the engine thread, which is the only caller of update().
        self._read_thread = read_thread if read_thread is not None else own_thread_reader()
        self._clock = clock
        # At nice > 0 ourselves, niced programs compete with us on equal terms.
        self._own_niced = _own_niceness() > 0 if niced is None else niced
        self._fixed = max(1, fixed) if fixed is not None else None
        self._last = self._read() if adapt else None
        self._last_thread = self._read_thread() if adapt else None
        self._niced_competes = True  # until a window shows otherwise (NICED_PRESENT)
        self._niced_before = 0.0  # cores niced work used in the window before the last
        self._niced_judged = False
        self._niced_strikes = 0  # windows in a row in which the engine waited for it
        self._probe_at = 0.0
        self._probe_every = PROBE_EVERY_S
        if not adapt:
            reason = "[local] adapt_to_load = false"
            self._choice = ThreadChoice(self._fixed or self.cores, self.cores, reason)
        elif self._fixed is not None:
            self._choice = ThreadChoice(self._fixed, self.cores, "[local] n_threads")
        elif self._last is None:
            reason = "every usable core (no CPU accounting to read on this system)"
            self._choice = ThreadChoice(self.cores, self.cores, reason)
        else:
            self._choice = ThreadChoice(self.cores, self.cores, "every usable core")

    @property
    def choice(self) -> ThreadChoice:
        return self._choice

    def update(self) -> ThreadChoice:
        # Called between every two tokens: the clock first, the kernel's files only when
        # a window is long enough to measure.
        if self._last is None or self._clock() - self._last.at < MIN_WINDOW_S:
            return self._choice
        now = self._read()
        if now is None or now.at - self._last.at < MIN_WINDOW_S:
            return self._choice
        normal, niced = self._loads(self._last, now)
        thread = self._read_thread()
        waited = _waited(self._last_thread, thread)
        self._last, self._last_thread = now, thread
        self._learn(normal, niced, waited, now.at)
        self._choice = self._decide(normal, niced, waited, now.at)
        return self._choice

    def _loads(self, a: CpuTimes, b: CpuTimes) -> tuple[float, float]:
        """Cores used by other programs over [a, b]: at normal priority, and niced."""
        wall = b.at - a.at
        busy = b.busy - a.busy
        own = b.own - a.own
        niced = max(0.0, b.niced - a.niced)
        if self._own_niced:  # at nice > 0 ourselves, niced programs compete on equal terms
            return max(0.0, (busy - own) / wall), 0.0
        return max(0.0, (busy - niced - own) / wall), niced / wall

    def _target(self, others: float) -> int:
        """The threads that leave `others` cores their share (the count to drop to)."""
        return _clamp(self.cores - math.floor(others + 1 - DROP_AT), self.cores)

    def _learn(self, normal: float, niced: float, waited: float | None, now: float) -> None:
        """Whether niced work takes from the engine, as the last window showed it: a
        window run with more threads than counting it would leave is the test."""
        # A verdict stands until a window judges again: wrong one way, the engine waits
        # in the next window with niced work, which says so; the other way, a try does.
        # Niced work the scheduler weighs against the engine all but stops while the
        # engine runs: what it used the window before says it is there.
        recent = max(niced, self._niced_before)
        self._niced_before = niced
        if (
            recent >= NICED_PRESENT
            and waited is not None
            and self._choice.threads > self._target(normal + recent)
        ):
            # Found harmless, it takes two windows in a row to be found competing: a
            # wait of one window can be anything (a compiler starting, the editor).
            self._niced_strikes = self._niced_strikes + 1 if waited >= WAITED_AT else 0
            needed = 2 if self._niced_judged and not self._niced_competes else 1
            self._niced_competes = self._niced_strikes >= needed
            self._niced_judged = True
            if self._niced_competes:
                self._probe_every = min(PROBE_MAX_S, 2 * self._probe_every)
            else:
                self._probe_every = PROBE_EVERY_S
            self._probe_at = now + self._probe_every

    def _decide(
        self, normal: float, niced: float, waited: float | None, now: float
    ) -> ThreadChoice:
        current = self._choice.threads
        others = normal + (niced if self._niced_competes else 0.0)
        if waited is not None:
            contended = waited >= WAITED_AT
        else:
            contended = others > self.cores - FREE_AT_LEAST
        shown = round(waited, 2) if waited is not None else None
        if self._fixed is not None:  # measured all the same: background work pauses
            return msgspec.structs.replace(
                self._choice, others=round(others, 2), contended=contended, waited=shown
            )
        lower = self._target(others)
        higher = _clamp(self.cores - math.floor(others + 1 - RAISE_BELOW), self.cores)
        threads = lower if current > lower else higher if current < higher else current
        probe = self._target(normal)
        niced_costs = self._niced_competes and niced >= NICED_PRESENT and probe > threads
        if niced_costs and now >= self._probe_at:
            self._probe_at = now + self._probe_every
            reason = (
                f"trying {probe} threads: does the niced work ({niced:.1f} cores) "
                "take from the engine? (it does when it runs in a session of its own)"
            )
            return self._choice_of(probe, reason, others, contended, shown)
        if others < RAISE_BELOW and threads == self.cores:
            reason = "every usable core: the machine is otherwise idle"
        elif threads == self.cores:
            reason = f"every usable core: other programs use {others:.1f} of {self.cores}"
        else:
            reason = (
                f"other programs use {others:.1f} of {self.cores} cores: {threads} left "
                "(threads that wait for a busy core spin)"
            )
        if niced >= NICED_PRESENT and not self._niced_competes:
            reason += f"; niced work ({niced:.1f} cores) does not take from the engine"
        return self._choice_of(threads, reason, others, contended, shown)

    def _choice_of(
        self, threads: int, reason: str, others: float, contended: bool, waited: float | None
    ) -> ThreadChoice:
        return ThreadChoice(
            threads,
            self.cores,
            reason,
            others=round(others, 2),
            contended=contended,
            waited=waited,
            changes=self._choice.changes + (threads != self._choice.threads),
        )


def _waited(a: ThreadTimes | None, b: ThreadTimes | None) -> float | None:
    """The share of the time the engine thread wanted a core that it waited for one;
    None when it hardly ran (it was idle: its waits say nothing) or is not measured."""
    if a is None or b is None:
        return None
    ran, waited = b.ran - a.ran, b.waited - a.waited
    if ran + waited < MIN_ENGINE_S:
        return None
    return waited / (ran + waited)


def _clamp(threads: int, cores: int) -> int:
    return max(1, min(cores, threads))


def _own_niceness() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0
