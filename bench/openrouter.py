"""Remote-route overhead bench: `python3 dev.py bench openrouter`.

Against the fake OpenRouter of the test suite (real HTTP and SSE on 127.0.0.1), side by
side in one run:
  raw    a plain httpx streaming request with the same body, parsed minimally;
  ours   the same request through aiguilleur's Spender: price lookup, ledger reservation
         (SQLite, synchronous=FULL), httpx-sse parsing, settlement;
  lsp    a completion answered from the response cache, over LSP (stdio) end to end.
Reports p50 time to first token and total, and our overhead over raw. Prints a table and
writes bench/results/openrouter-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types as lsp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from aiguilleur.remote.ledger import Budget, SpendLedger  # noqa: E402
from aiguilleur.remote.openrouter import OpenRouterClient, parse_prices  # noqa: E402
from aiguilleur.remote.prices import PriceBook  # noqa: E402
from aiguilleur.remote.spending import Spender  # noqa: E402
from aiguilleur.types import ChatMessage  # noqa: E402
from bench.common import isolated_env  # noqa: E402
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter  # noqa: E402

KEY = "sk-or-v1-bench"
MESSAGES = [ChatMessage("system", "complete code"), ChatMessage("user", "def add(a, b):\n")]
REPLY = " ".join(["x"] * 32)


async def raw_arm(url: str, n: int) -> list[tuple[float, float]]:
    body = {
        "model": "vendor/coder",
        "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            first = 0.0
            async with c.stream("POST", "/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if not first and line.startswith("data: {") and '"content"' in line:
                        first = time.perf_counter() - t0
                    if line == "data: [DONE]":
                        break
            out.append((first * 1000, (time.perf_counter() - t0) * 1000))
    return out


async def our_arm(fake: FakeOpenRouter, n: int, ledger_dir: Path) -> list[tuple[float, float]]:
    client = OpenRouterClient(KEY, base_url=fake.base_url, label="bench")
    prices = parse_prices({"data": [FakeOpenRouter._model_json(m) for m in fake.models]})
    spender = Spender(
        client, SpendLedger(ledger_dir / "ledger.db"), Budget(daily=100.0), PriceBook(prices=prices)
    )
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        first: list[float] = []

        def seen(_: str, first: list[float] = first, t0: float = t0) -> None:
            if not first:
                first.append(time.perf_counter() - t0)

        await spender.chat(
            "vendor/coder", MESSAGES, max_tokens=64, feature="bench", route="r", on_text=seen
        )
        out.append((first[0] * 1000, (time.perf_counter() - t0) * 1000))
    await client.aclose()
    return out


async def lsp_cache_arm(fake: FakeOpenRouter, n: int, home: Path) -> list[float]:
    (home / "c" / "aiguilleur").mkdir(parents=True)
    (home / "c" / "aiguilleur" / "config.toml").write_text(
        '[local]\nmodel = "/nonexistent.gguf"\n'
        f'[keys.bench]\nenv = "BENCH_KEY"\nbase_url = "{fake.base_url}"\ndaily = 100.0\n'
        '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "bench"\n'
        'model = "vendor/coder"\n'
    )
    env = isolated_env(home, BENCH_KEY=KEY)
    text = "def add(a, b):\n    \n"
    path = home / "a.py"
    out = []
    async with ServerProcess(home, env=env) as server:
        await server.wait_ready()
        for i in range(n + 1):
            uri = server.open(path, text)
            t0 = time.perf_counter()
            await server.inline(uri, 1, 4)
            latency = (time.perf_counter() - t0) * 1000
            last = await server.last(uri)
            server.client.text_document_did_close(
                lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri))
            )
            if i > 0:  # the first one fills the cache
                assert last.usage.cached, "expected a response-cache hit"
                out.append(latency)
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="aiguilleur-orbench-") as tmp,
        FakeOpenRouter(
            models=[FakeModel("vendor/coder", reply=REPLY)], keys=[FakeKey(KEY, "bench")]
        ) as fake,
    ):
        n = args.requests
        # Interleave the arms in blocks so machine noise hits both alike.
        raw: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for _ in range(4):
            raw += asyncio.run(raw_arm(fake.base_url, n // 4))
            ours += asyncio.run(our_arm(fake, n // 4, Path(tmp)))
        cache = asyncio.run(lsp_cache_arm(fake, 50, Path(tmp) / "lsp"))
    rows = {
        "raw httpx": (p50([f for f, _ in raw]), p50([t for _, t in raw])),
        "aiguilleur Spender": (p50([f for f, _ in ours]), p50([t for _, t in ours])),
    }
    print(f"\n{'arm':<24}{'first token p50 ms':>20}{'total p50 ms':>16}")
    for name, (first, total) in rows.items():
        print(f"{name:<24}{first:>20.2f}{total:>16.2f}")
    over_first = rows["aiguilleur Spender"][0] - rows["raw httpx"][0]
    over_total = rows["aiguilleur Spender"][1] - rows["raw httpx"][1]
    print(f"\noverhead p50: first token {over_first:+.2f} ms, total {over_total:+.2f} ms")
    print("(target <= 3 ms)")
    print(f"response-cache hit over LSP p50: {p50(cache):.2f} ms (target <= 5), n={len(cache)}")
    out: dict[str, Any] = {
        "requests": n,
        "p50_ms": rows,
        "overhead_first_ms": over_first,
        "overhead_total_ms": over_total,
        "lsp_cache_hit_p50_ms": p50(cache),
        "raw": raw,
        "ours": ours,
        "lsp_cache": cache,
    }
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"openrouter-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
