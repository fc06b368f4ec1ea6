"""The spend ledger: budgets that hold under concurrency, across processes and kill -9."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aiguilleur.remote.ledger import (
    Budget,
    BudgetRefused,
    SpendLedger,
    Status,
    period_start,
)

ROOT = str(Path(__file__).resolve().parents[2])


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def reserve(ledger: SpendLedger, key: str, usd: float, budget: Budget, **kw: float) -> object:
    return ledger.reserve(key, usd, budget, route="r", model="m", feature="completion", **kw)


def test_periods_are_utc_with_monday_weeks() -> None:
    wed = utc(2026, 11, 25, 15, 30)  # a Wednesday
    assert period_start("daily", wed) == utc(2026, 11, 25)
    assert period_start("weekly", wed) == utc(2026, 11, 23)  # Monday
    assert period_start("monthly", wed) == utc(2026, 11, 1)
    assert period_start("weekly", utc(2026, 11, 23, 0, 0, 1)) == utc(2026, 11, 23)
    assert period_start("total", wed) == 0.0


def test_a_reservation_that_does_not_fit_is_refused_with_the_reason(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(daily=1.0)
    r = reserve(ledger, "work", 0.6, budget)
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "work", 0.6, budget)
    assert "key 'work'" in str(refused.value) and "$1.00 daily budget" in str(refused.value)
    ledger.settle(r, 0.1, model_used="m2", prompt_tokens=100, completion_tokens=10)  # type: ignore[arg-type]
    reserve(ledger, "work", 0.6, budget)  # fits now: 0.1 settled + 0.6
    assert ledger.spent("work", "daily") == pytest.approx(0.7)
    reserve(ledger, "other", 0.9, budget)  # budgets are per key


def test_yesterday_does_not_count_today_but_does_this_week(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    wed = utc(2026, 11, 25, 12)
    budget = Budget(daily=1.0, weekly=1.5)
    r = reserve(ledger, "k", 0.9, budget, now=wed - 86_400)
    ledger.settle(r, 0.9)  # type: ignore[arg-type]
    reserve(ledger, "k", 0.5, budget, now=wed)  # daily: fits
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "k", 0.5, budget, now=wed)  # weekly: 0.9 + 0.5 + 0.5 > 1.5
    assert refused.value.period == "weekly"


def test_released_is_free_unknown_stays_spent_and_a_generation_counts_once(
    tmp_path: Path,
) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(total=1.0)
    a, b, c = (reserve(ledger, "k", 0.3, budget) for _ in range(3))
    ledger.release(a, "HTTP 402")  # type: ignore[arg-type]
    ledger.unknown(b, "gen-b", "connection cut")  # type: ignore[arg-type]
    ledger.settle(c, 0.05, generation_id="gen-c")  # type: ignore[arg-type]
    assert ledger.spent("k", "total") == pytest.approx(0.35)
    d = reserve(ledger, "k", 0.3, budget)
    ledger.settle(d, 0.05, generation_id="gen-c")  # type: ignore[arg-type]  # a retry
    assert ledger.spent("k", "total") == pytest.approx(0.35)
    assert ledger.count(Status.SETTLED) == 1


def test_openrouters_remaining_limit_caps_reservations_too(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    reserve(ledger, "k", 0.3, Budget(), remote_remaining_usd=0.5)
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "k", 0.3, Budget(), remote_remaining_usd=0.5)
    assert "OpenRouter" in refused.value.period


def test_200_concurrent_reservations_never_pass_the_budget(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(daily=0.50)  # fits 50 worst cases of $0.01
    granted: list[object] = []
    refused: list[BudgetRefused] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            r = reserve(ledger, "k", 0.01, budget)
        except BudgetRefused as error:
            with lock:
                refused.append(error)
            return
        ledger.settle(r, 0.004)  # type: ignore[arg-type]  # real costs are lower
        with lock:
            granted.append(r)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) + len(refused) == 200
    assert ledger.spent("k", "daily") <= 0.50
    # Settling freed room as it went: more than 50 fit, never beyond the budget.
    assert len(granted) >= 50


WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from aiguilleur.remote.ledger import SpendLedger, Budget, BudgetRefused
ledger = SpendLedger(__import__("pathlib").Path({db!r}))
for i in range({n}):
    try:
        r = ledger.reserve("k", 0.01, Budget(total={total}), route="r", model="m", feature="f")
    except BudgetRefused:
        print("refused", flush=True)
        continue
    time.sleep(0.002)
    ledger.settle(r, 0.01, generation_id=f"{tag}-{{i}}")
    print("settled", r.id, flush=True)
"""


def test_two_processes_share_the_budget_and_a_kill_9_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    SpendLedger(db)

    def spawn(tag: str, n: int) -> subprocess.Popen[str]:
        code = WORKER.format(root=ROOT, db=str(db), n=n, total=1.0, tag=tag)
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    steady, victim = spawn("a", 80), spawn("b", 400)
    assert victim.stdout is not None
    seen: list[str] = []
    while len(seen) < 10:
        seen.append(victim.stdout.readline())
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rest, _ = steady.communicate(timeout=120)
    victim_settled = {int(x.split()[1]) for x in seen if x.startswith("settled")}
    steady_settled = {int(x.split()[1]) for x in rest.splitlines() if x.startswith("settled")}

    ledger = SpendLedger(db)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(raw.execute("SELECT id, status FROM requests").fetchall())
    # Every settlement a process reported is there, settled, once (ids are unique).
    assert all(rows[i] == "settled" for i in victim_settled | steady_settled)
    assert ledger.spent("k", "total") <= 1.0 + 1e-9
    orphaned = ledger.orphans()  # the killed process may have left a reservation
    assert orphaned <= 1
    assert ledger.count(Status.RESERVED) == 0
    assert ledger.spent("k", "total") <= 1.0 + 1e-9


def test_a_killed_process_not_yet_reaped_leaves_orphans_too(tmp_path: Path) -> None:
    # A daemon killed under a parent that has not reaped it yet is a zombie: it answers
    # signal 0, but its reservations will never be settled.
    db = tmp_path / "ledger.db"
    code = WORKER.format(root=ROOT, db=str(db), n=1, total=1.0, tag="z").replace(
        "ledger.settle(", "time.sleep(600); ledger.settle("
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        ledger = SpendLedger(db)
        deadline = time.monotonic() + 60
        while ledger.count(Status.RESERVED) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ledger.count(Status.RESERVED) == 1
        assert ledger.orphans() == 0  # it runs: its reservation is pending, not lost
        worker.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)  # dead, left unreaped
        assert ledger.orphans() == 1
        assert ledger.count(Status.RESERVED) == 0 and ledger.count(Status.UNKNOWN) == 1
    finally:
        worker.kill()
        worker.wait()


def test_usage_rows_group_by_day_key_model_and_feature(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    r = reserve(ledger, "k", 0.2, Budget())
    ledger.settle(r, 0.02, model_used="vendor/real", prompt_tokens=10, completion_tokens=5)  # type: ignore[arg-type]
    ledger.cache_hit("k", route="r", model="vendor/real", feature="completion")
    [row] = ledger.usage(since=time.time() - 60)
    assert (row.key_label, row.model, row.feature) == ("k", "vendor/real", "completion")
    assert (row.requests, row.cache_hits, row.prompt_tokens) == (2, 1, 10)
    assert row.cost_usd == pytest.approx(0.02) and row.pending_usd == 0


def test_a_budget_full_of_requests_in_flight_is_busy_not_spent(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(daily=1.0)
    first = reserve(ledger, "work", 0.7, budget)
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "work", 0.5, budget)
    # It fits once the first settles: busy, and said so.
    assert refused.value.busy and refused.value.in_flight == pytest.approx(0.7)
    assert "held by requests still in flight" in str(refused.value)
    ledger.settle(first, 0.6)  # type: ignore[arg-type]
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "work", 0.5, budget)
    assert not refused.value.busy and "has spent $0.6000" in str(refused.value)


def test_an_outcome_never_learnt_is_spent_not_in_flight(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(daily=1.0)
    lost = reserve(ledger, "work", 0.7, budget)
    ledger.unknown(lost, "gen-1", "the stream was cut")  # type: ignore[arg-type]
    with pytest.raises(BudgetRefused) as refused:
        reserve(ledger, "work", 0.5, budget)
    assert not refused.value.busy
