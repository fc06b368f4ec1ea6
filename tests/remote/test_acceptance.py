"""Suggestion outcomes in the ledger's file, and what `aiguilleur usage` makes of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from aiguilleur.commands.usage import render
from aiguilleur.config.settings import Config
from aiguilleur.remote.acceptance import AcceptanceLog, acceptance_rows
from aiguilleur.remote.ledger import Budget, SpendLedger
from aiguilleur.remote.usage import report
from aiguilleur.types import Outcome, SuggestionOutcome

NOW = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC).timestamp()


def outcome(kind: Outcome, route: str = "cloud", chars: int = 10) -> SuggestionOutcome:
    taken = {Outcome.ACCEPTED: chars, Outcome.PARTIAL: chars // 2, Outcome.DISMISSED: 0}[kind]
    return SuggestionOutcome(NOW, route, "vendor/coder", kind, chars, taken)


def test_outcomes_add_up_per_day_route_and_model_across_flushes(tmp_path: Path) -> None:
    log = AcceptanceLog(tmp_path / "ledger.db")
    for kind in (Outcome.ACCEPTED, Outcome.PARTIAL, Outcome.DISMISSED, Outcome.DISMISSED):
        log.record(outcome(kind))
    log.record(outcome(Outcome.ACCEPTED, route="local"))
    log.flush()
    log.record(outcome(Outcome.ACCEPTED))
    log.flush()
    rows = {r.route: r for r in acceptance_rows(tmp_path / "ledger.db")}
    cloud = rows["cloud"]
    assert (cloud.day, cloud.shown, cloud.accepted, cloud.partial) == ("2026-12-06", 5, 2, 1)
    assert (cloud.shown_chars, cloud.accepted_chars) == (50, 25)
    assert rows["local"].accepted == 1


def test_a_database_that_cannot_be_written_keeps_the_counts(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    log = AcceptanceLog(blocked / "ledger.db")  # its directory is a file
    log.record(outcome(Outcome.ACCEPTED))
    log.flush()
    log.path = tmp_path / "ledger.db"
    log.flush()
    [row] = acceptance_rows(tmp_path / "ledger.db")
    assert row.accepted == 1


def test_usage_shows_what_each_accepted_suggestion_cost(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = SpendLedger(db)
    for cost in (0.002, 0.004):
        r = ledger.reserve(
            "work", 0.01, Budget(), route="cloud", model="vendor/coder", feature="completion",
            now=NOW,
        )  # fmt: skip
        ledger.settle(r, cost, model_used="vendor/coder")
    ledger.close()
    log = AcceptanceLog(db)
    for kind in (Outcome.ACCEPTED, Outcome.PARTIAL, Outcome.DISMISSED, Outcome.DISMISSED):
        log.record(outcome(kind))
    log.record(outcome(Outcome.DISMISSED, route="local"))
    log.flush()
    r = report(Config(), db, 0)
    cloud = next(a for a in r.acceptance if a.route == "cloud")
    assert (cloud.shown, cloud.accepted, cloud.partial) == (4, 1, 1)
    assert cloud.rate == pytest.approx(0.5) and cloud.spend_usd == pytest.approx(0.006)
    assert cloud.cost_per_accepted_usd == pytest.approx(0.003)
    local = next(a for a in r.acceptance if a.route == "local")
    assert local.cost_per_accepted_usd is None  # free, and nothing taken
    text = render(r)
    assert "suggestions (taken" in text and "taken per day" in text
    line = next(x for x in text.splitlines() if " cloud " in x and "vendor/coder" in x)
    assert line.split()[-5:] == ["2", "1", "50%", "0.0060", "0.00300"]
    assert "2026-12-06 " in text and "2 of 5" in text
