"""`aiguilleur usage`: the ledger's report (remote/usage.py) as a table and a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from aiguilleur.config.homes import data_dir
from aiguilleur.config.loading import ConfigLayers
from aiguilleur.remote.usage import UsageReport, report

BAR = 40


def render(r: UsageReport) -> str:
    lines = [f"spend over the last {r.days} days" if r.days else "spend since the start"]
    if not r.rows:
        lines.append("  nothing yet")
    else:
        lines.append(
            f"  {'day':<10} {'key':<10} {'model':<32} {'feature':<12} {'req':>5} "
            f"{'cached':>6} {'tokens in/out':>15} {'USD':>10}"
        )
        for row in r.rows:
            tokens = f"{row.prompt_tokens}/{row.completion_tokens}"
            pending = f" (+{row.pending_usd:.4f} pending)" if row.pending_usd else ""
            lines.append(
                f"  {row.day:<10} {row.key_label[:10]:<10} {row.model[:32]:<32} "
                f"{row.feature[:12]:<12} {row.requests:>5} {row.cache_hits:>6} {tokens:>15} "
                f"{row.cost_usd:>10.4f}{pending}"
            )
        lines.append(f"  total: ${r.total_usd:.4f}")
        per_day: dict[str, float] = {}
        for row in r.rows:
            per_day[row.day] = per_day.get(row.day, 0.0) + row.cost_usd + row.pending_usd
        top = max(per_day.values()) or 1.0
        lines.append("\nper day")
        for day, usd in sorted(per_day.items()):
            bar = "#" * max(1 if usd else 0, round(BAR * usd / top))
            lines.append(f"  {day} {bar:<{BAR}} ${usd:.4f}")
    if r.budgets:
        lines.append("\nbudgets left")
        for b in r.budgets:
            lines.append(
                f"  {b.key:<10} {b.period:<8} ${b.left_usd:.4f} of ${b.limit_usd:.2f} "
                f"(spent ${b.spent_usd:.4f})"
            )
    return "\n".join(lines)


def run_usage(days: int, as_json: bool) -> int:
    config = ConfigLayers(Path.cwd()).load().config
    r = report(config, data_dir() / "ledger.db", days)
    if as_json:
        print(json.dumps(msgspec.to_builtins(r), indent=1))
    else:
        print(render(r))
    return 0
