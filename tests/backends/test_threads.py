"""The thread governor's rules, on a fake machine whose CPU accounting the test writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiguilleur.backends.threads import ThreadGovernor, proc_stat_reader
from tests.support.machine import FakeMachine


def governor(
    machine: FakeMachine, cores: int = 2, fixed: int | None = None, adapt: bool = True
) -> ThreadGovernor:
    return machine.governor(cores, fixed, adapt)


def test_an_idle_machine_keeps_every_core() -> None:
    m = FakeMachine()
    g = governor(m)
    m.run(1.0, ours=2.0)
    choice = g.update()
    assert choice.threads == 2
    assert choice.others == 0.0
    assert not choice.contended
    assert "idle" in choice.reason


def test_one_busy_process_costs_a_thread_and_it_comes_back_when_it_stops() -> None:
    m = FakeMachine()
    g = governor(m)
    # Two spinning engine threads and a compiler share 2 cores: it gets two thirds of one.
    m.run(0.3, ours=1.33, others=0.67, waited=0.33)
    choice = g.update()
    assert (choice.threads, choice.contended, choice.changes) == (1, True, 1)
    assert "0.7 of 2" in choice.reason
    # At one thread the compiler has its own core, and so has the engine: background
    # work takes nothing from the build.
    m.run(0.3, ours=1.0, others=1.0)
    choice = g.update()
    assert (choice.threads, choice.contended) == (1, False)
    # The build ends: both cores at the next measure.
    m.run(0.3, ours=1.0)
    choice = g.update()
    assert (choice.threads, choice.contended, choice.changes) == (2, False, 2)


def test_background_work_pauses_when_it_would_take_a_core_from_other_programs() -> None:
    m = FakeMachine()
    g = governor(m)
    # Two busy processes and the engine's one thread: it waits a third of the time.
    m.run(0.3, ours=0.67, others=1.33, waited=0.33)
    assert g.update().contended
    # Paused, the engine does not run: the others use both cores, no core is free.
    m.run(0.5, ours=0.0, others=2.0)
    assert g.update().contended
    # One of them ends: a core is free again.
    m.run(0.5, ours=0.0, others=1.0)
    assert not g.update().contended


def test_a_load_near_the_edge_does_not_flip_the_count_each_time() -> None:
    m = FakeMachine()
    g = governor(m)
    m.run(0.3, ours=1.4, others=0.6, waited=0.3)
    assert g.update().threads == 1
    for _ in range(5):  # 0.4 of a core: not enough to drop a thread, too much to add one
        m.run(0.3, ours=1.0, others=0.4)
        assert g.update().threads == 1
    m.run(0.3, ours=1.0, others=0.2)
    assert g.update().threads == 2
    for _ in range(5):
        m.run(0.3, ours=1.6, others=0.4)
        assert g.update().threads == 2


def test_many_cores_keep_what_others_leave() -> None:
    m = FakeMachine()
    g = governor(m, cores=8)
    m.run(0.5, ours=5.0, others=3.0)  # a make -j3 beside the engine
    choice = g.update()
    assert (choice.threads, choice.contended) == (5, False)
    m.run(0.5, ours=1.0, others=7.0, waited=0.5)  # everything busy: one thread, never none
    choice = g.update()
    assert (choice.threads, choice.contended) == (1, True)


def test_niced_work_does_not_count_when_the_engine_does_not_wait_for_it() -> None:
    m = FakeMachine()
    g = governor(m)
    m.run(0.5, ours=1.4, niced=0.6)  # at nice 19 it takes what the engine leaves
    choice = g.update()
    assert choice.threads == 2
    assert not choice.contended
    assert "niced work (1.2 cores)" not in choice.reason


def test_niced_work_in_a_group_of_its_own_counts_and_is_tried_again_later() -> None:
    m = FakeMachine()
    g = governor(m)
    # `nice make` in a terminal: a session of its own, an equal share whatever its nice.
    m.run(0.5, ours=1.0, niced=1.0, waited=0.4)
    assert g.update().threads == 1
    for _ in range(10):  # at one thread the engine has its core: no wait, still one
        m.run(0.5, ours=1.0, niced=1.0)
        choice = g.update()
        assert choice.threads == 1, choice
    # Later, one window at two threads asks again, and the engine waits again; each try
    # that finds it so comes twice as late as the one before (a try costs what it tests).
    m.run(15.0, ours=1.0, niced=1.0)
    probe = g.update()
    assert probe.threads == 2 and probe.reason.startswith("trying 2 threads")
    m.run(0.3, ours=1.3, niced=0.7, waited=0.35)
    assert g.update().threads == 1
    m.run(30.0, ours=1.0, niced=1.0)
    assert g.update().threads == 1
    m.run(10.0, ours=1.0, niced=1.0)
    assert g.update().threads == 2


def test_niced_work_in_the_engine_s_group_is_found_harmless_by_a_try() -> None:
    m = FakeMachine()
    g = governor(m)
    m.run(0.5, ours=1.0, others=1.0)  # a build at normal priority: one thread
    assert g.update().threads == 1
    m.run(0.5, ours=0.0, niced=1.0)  # it ends; niced work runs on, not yet judged: a try
    assert g.update().reason.startswith("trying 2 threads")
    # The scheduler gives the engine both cores: the niced work all but stops meanwhile.
    m.run(0.5, ours=1.97, niced=0.03)
    assert g.update().threads == 2
    for ours in (0.0, 1.97, 0.0, 1.0):  # idle or working, niced work no longer counts
        m.run(0.5, ours=ours, niced=2.0 - ours)
        choice = g.update()
        assert choice.threads == 2, choice
    assert "does not take from the engine" in choice.reason
    # One window in which the engine waited (a compiler starting) is not a verdict; two
    # in a row are.
    m.run(0.5, ours=1.5, niced=0.5, waited=0.3)
    assert g.update().threads == 2
    m.run(0.5, ours=1.9, niced=0.1)
    assert g.update().threads == 2
    m.run(0.5, ours=1.5, niced=0.5, waited=0.3)
    m.run(0.0, ours=0.0)
    assert g.update().threads == 2
    m.run(0.5, ours=1.5, niced=0.5, waited=0.3)
    assert g.update().threads == 1


def test_niced_work_counts_when_the_engine_is_niced_too() -> None:
    m = FakeMachine()
    g = ThreadGovernor(2, None, m.read, niced=True, clock=lambda: m.now, read_thread=m.read_thread)
    m.run(0.5, ours=1.3, niced=0.7)
    assert g.update().threads == 1


def test_short_windows_are_not_measured() -> None:
    m = FakeMachine()
    g = governor(m)
    m.run(0.05, ours=0.0, others=2.0)
    assert g.update().others is None  # 50 ms: too few ticks to judge
    m.run(0.25, ours=0.0, others=2.0)
    assert g.update().threads == 1  # measured over both


def test_n_threads_in_the_config_wins_but_the_load_is_still_measured() -> None:
    m = FakeMachine()
    g = governor(m, fixed=2)
    m.run(0.5, ours=1.0, others=1.0, waited=0.5)
    choice = g.update()
    assert choice.threads == 2
    assert choice.reason == "[local] n_threads"
    assert choice.contended  # background work still pauses


def test_no_accounting_keeps_every_core() -> None:
    m = FakeMachine()
    m.readable = False
    g = governor(m)
    m.run(1.0, ours=1.0, others=1.0)
    choice = g.update()
    assert choice.threads == 2
    assert "no CPU accounting" in choice.reason


def test_proc_stat_is_read_for_the_usable_cores(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  30 5 10 100 0 0 0 0 0 0\n"
        "cpu0 10 5 5 50 0 0 0 1 0 0\n"
        "cpu1 20 0 5 50 0 1 1 0 0 0\n"
        "intr 12345\n"
    )
    times = proc_stat_reader(str(stat))()
    assert times is not None
    tick = 100  # USER_HZ is 100 on Linux
    usable = _usable()
    expected = {0: (10 + 5 + 5 + 1, 5), 1: (20 + 5 + 1 + 1, 0)}
    busy = sum(expected[c][0] for c in usable if c in expected)
    niced = sum(expected[c][1] for c in usable if c in expected)
    assert times.busy == pytest.approx(busy / tick)
    assert times.niced == pytest.approx(niced / tick)


def test_an_unreadable_proc_stat_is_no_reading(tmp_path: Path) -> None:
    assert proc_stat_reader(str(tmp_path / "absent"))() is None
    garbled = tmp_path / "stat"
    garbled.write_text("cpuX a b c\ncpu0 1 2\n")
    assert proc_stat_reader(str(garbled))() is None


def _usable() -> set[int]:
    import os

    return set(os.sched_getaffinity(0))


def test_adapting_off_measures_nothing() -> None:
    m = FakeMachine()
    g = governor(m, adapt=False)
    m.run(1.0, ours=1.0, others=1.0)
    choice = g.update()
    assert (choice.threads, choice.contended, choice.others) == (2, False, None)
    assert choice.reason == "[local] adapt_to_load = false"
    assert governor(m, cores=4, fixed=3, adapt=False).choice.threads == 3
