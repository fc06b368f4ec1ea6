"""`aiguilleur usage`: the ledger's report (remote/usage.py) as tables and bar charts: the
spend, and what each route's suggestions bought."""

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
    lines.extend(_suggestions(r))
    if r.budgets:
        lines.append("\nbudgets left")
        for b in r.budgets:
            lines.append(
                f"  {b.key:<10} {b.period:<8} ${b.left_usd:.4f} of ${b.limit_usd:.2f} "
                f"(spent ${b.spent_usd:.4f})"
            )
    return "\n".join(lines)


def _suggestions(r: UsageReport) -> list[str]:
    """What each route's suggestions bought: a table, then the share taken per day."""
    if not r.acceptance:
        return []
    lines = [
        "\nsuggestions (taken: accepted whole, or a part of them)",
        f"  {'day':<10} {'route':<12} {'model':<32} {'shown':>6} {'taken':>6} {'part':>5} "
        f"{'rate':>6} {'USD':>9} {'USD/taken':>10}",
    ]
    for a in r.acceptance:
        per = f"{a.cost_per_accepted_usd:.5f}" if a.cost_per_accepted_usd is not None else "-"
        lines.append(
            f"  {a.day:<10} {a.route[:12]:<12} {a.model[:32]:<32} {a.shown:>6} "
            f"{a.accepted + a.partial:>6} {a.partial:>5} {a.rate:>6.0%} {a.spend_usd:>9.4f} "
            f"{per:>10}"
        )
    per_day: dict[str, tuple[int, int]] = {}
    for a in r.acceptance:
        shown, taken = per_day.get(a.day, (0, 0))
        per_day[a.day] = (shown + a.shown, taken + a.accepted + a.partial)
    lines.append("\ntaken per day (#: taken, .: shown and not taken)")
    top = max(shown for shown, _ in per_day.values()) or 1
    for day, (shown, taken) in sorted(per_day.items()):
        width = max(1, round(BAR * shown / top))
        hashes = round(width * taken / shown) if shown else 0
        bar = "#" * hashes + "." * (width - hashes)
        lines.append(f"  {day} {bar:<{BAR}} {taken} of {shown}")
    return lines


def run_usage(days: int, as_json: bool) -> int:
    config = ConfigLayers(Path.cwd()).load().config
    r = report(config, data_dir() / "ledger.db", days)
    if as_json:
        print(json.dumps(msgspec.to_builtins(r), indent=1))
    else:
        print(render(r))
    return 0
