"""What was spent, per day, key, model and feature, and what is left of each budget: read
from the ledger for `aiguilleur usage` and the `aiguilleur.usage` LSP command."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from aiguilleur.config.settings import Config
from aiguilleur.remote.ledger import Budget, SpendLedger, UsageRow


class KeyLeft(msgspec.Struct, frozen=True):
    key: str
    period: str
    limit_usd: float
    spent_usd: float
    left_usd: float


class UsageReport(msgspec.Struct, frozen=True):
    days: int
    rows: list[UsageRow]
    budgets: list[KeyLeft]
    total_usd: float


def report(config: Config, ledger_path: Path, days: int) -> UsageReport:
    since = time.time() - days * 86_400 if days > 0 else 0.0
    if not ledger_path.exists():
        return UsageReport(days, [], _budgets(config, None), 0.0)
    ledger = SpendLedger(ledger_path)
    try:
        rows = ledger.usage(since)
        budgets = _budgets(config, ledger)
    finally:
        ledger.close()
    return UsageReport(days, rows, budgets, sum(r.cost_usd for r in rows))


def _budgets(config: Config, ledger: SpendLedger | None) -> list[KeyLeft]:
    out = []
    for label, key in config.keys.items():
        budget = Budget(key.daily, key.weekly, key.monthly, key.total)
        for period, limit in budget.limits():
            spent = ledger.spent(label, period) if ledger is not None else 0.0
            out.append(KeyLeft(label, period, limit, spent, max(0.0, limit - spent)))
    return out
