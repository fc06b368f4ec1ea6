"""What was spent, per day, key, model and feature, what is left of each budget, and what
the suggestions of each route bought (shown, accepted, cost per accepted suggestion): read
from the ledger for `aiguilleur usage` and the `aiguilleur.usage` LSP command."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from aiguilleur.config.settings import Config
from aiguilleur.remote.acceptance import AcceptanceRow, acceptance_rows
from aiguilleur.remote.ledger import Budget, SpendLedger, UsageRow


class KeyLeft(msgspec.Struct, frozen=True):
    key: str
    period: str
    limit_usd: float
    spent_usd: float
    left_usd: float


class RouteAcceptance(msgspec.Struct, frozen=True):
    """One day of one route's suggestions: how many were shown and taken (whole, or a
    part), what the route's completions cost that day, and so what each suggestion taken
    cost (None: nothing taken, or nothing spent)."""

    day: str
    route: str
    model: str
    shown: int
    accepted: int
    partial: int
    rate: float  # taken (whole or a part) per shown
    spend_usd: float
    cost_per_accepted_usd: float | None


def route_acceptance(row: AcceptanceRow, spend_usd: float) -> RouteAcceptance:
    taken = row.accepted + row.partial
    return RouteAcceptance(
        row.day,
        row.route,
        row.model,
        row.shown,
        row.accepted,
        row.partial,
        taken / row.shown if row.shown else 0.0,
        spend_usd,
        spend_usd / taken if taken and spend_usd else None,
    )


class UsageReport(msgspec.Struct, frozen=True):
    days: int
    rows: list[UsageRow]
    budgets: list[KeyLeft]
    total_usd: float
    acceptance: list[RouteAcceptance] = []


def report(config: Config, ledger_path: Path, days: int) -> UsageReport:
    since = time.time() - days * 86_400 if days > 0 else 0.0
    if not ledger_path.exists():
        return UsageReport(days, [], _budgets(config, None), 0.0)
    ledger = SpendLedger(ledger_path)
    try:
        rows = ledger.usage(since)
        budgets = _budgets(config, ledger)
        spend = ledger.completion_spend(since)
    finally:
        ledger.close()
    since_day = time.strftime("%Y-%m-%d", time.gmtime(since))
    taken = [
        route_acceptance(a, spend.get((a.day, a.route, a.model), 0.0))
        for a in acceptance_rows(ledger_path, since_day)
    ]
    return UsageReport(days, rows, budgets, sum(r.cost_usd for r in rows), taken)


def _budgets(config: Config, ledger: SpendLedger | None) -> list[KeyLeft]:
    out = []
    for label, key in config.keys.items():
        budget = Budget(key.daily, key.weekly, key.monthly, key.total)
        for period, limit in budget.limits():
            spent = ledger.spent(label, period) if ledger is not None else 0.0
            out.append(KeyLeft(label, period, limit, spent, max(0.0, limit - spent)))
    return out
