"""Keystroke-replay bench: `python3 dev.py bench` (or `.venv/bin/python bench/run.py`).

Retypes a function of an unmodified standard-library file, keystroke by keystroke,
through `aiguilleur serve` over stdio, on a random-weight GGUF shaped like
Qwen2.5-Coder-0.5B (Q8_0), or with `--model real` the real Qwen2.5-Coder-0.5B-Instruct
Q4_K_M from the verified PyPI mirror. Arms, side by side in one run:
  (a) aiguilleur as built: prefix reuse + typing-through;
  (b) the same engine with prefix reuse off: a fresh prompt evaluation per request, as
      servers that create a new context per request do (a few sampled keystrokes);
  (c) when LLAMA_SERVER names a llama-server binary: its /infill with cache_prompt on the
      same model and the same prefix/suffix per keystroke (bench/llama_server.py).
Prints a table and writes bench/results/replay-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends.synthetic import QWEN25_CODER_05B, ensure_model  # noqa: E402
from aiguilleur.backends.threads import usable_cores  # noqa: E402
from aiguilleur.commands.replay import Keystroke, ServerProcess, replay  # noqa: E402
from bench.common import isolated_env  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    i = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[i]


async def run_arm(
    model: Path, source: Path, function: str, options: dict[str, Any], keystrokes: int, every: int
) -> list[Keystroke]:
    with tempfile.TemporaryDirectory(prefix="aiguilleur-bench-") as tmp:
        home = Path(tmp)
        env = isolated_env(home)
        options = {**options, "local": {**options.get("local", {}), "model": str(model)}}
        async with ServerProcess(home, env=env, init_options=options) as server:
            status = await server.wait_ready()
            if status.model is None:
                raise SystemExit(f"bench: model did not load: {status.model_problem}")
            return await replay(
                server,
                home / source.name,
                source.read_text(),
                function,
                keystrokes=keystrokes,
                every=every,
            )


def summarise(name: str, ks: list[Keystroke]) -> dict[str, Any]:
    engine = [k for k in ks if not k.typed_through]
    return {
        "arm": name,
        "requests": len(ks),
        "typed_through": sum(k.typed_through for k in ks),
        "prompt_tokens_p50": pct([k.prompt_tokens for k in engine], 0.5),
        "evaluated_tokens_p50": pct([k.evaluated_tokens for k in engine], 0.5),
        "generated_tokens_mean": statistics.fmean([k.completion_tokens for k in engine] or [0]),
        "prompt_ms_p50": pct([k.prompt_ms for k in engine], 0.5),
        "latency_ms_p50": pct([k.latency_ms for k in ks], 0.5),
        "latency_ms_p90": pct([k.latency_ms for k in ks], 0.9),
        "engine_latency_ms_p50": pct([k.latency_ms for k in engine], 0.5),
        "draft_acceptance": (
            100 * sum(k.accepted_tokens for k in engine) / drafted
            if (drafted := sum(k.drafted_tokens for k in engine))
            else float("nan")
        ),
        "server_overhead_ms_p50": pct([k.server_ms for k in ks], 0.5),
        "rpc_overhead_ms_p50": pct(
            [k.latency_ms - k.prompt_ms - k.generation_ms - k.queue_ms for k in ks], 0.5
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keystrokes", type=int, default=80)
    parser.add_argument("--baseline-samples", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--suffix-tokens", type=int, default=128)
    parser.add_argument("--function", default="dedent")
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: default)")
    parser.add_argument(
        "--sections",
        help="replay,rate,accept (default: all with --model, replay alone without)",
    )
    parser.add_argument("--accepts", type=int, default=40, help="tasks of the accept chain")
    parser.add_argument("--read-ms", type=int, default=500, help="reading time before Tab")
    parser.add_argument(
        "--model",
        help="a GGUF file, or `real` for Qwen2.5-Coder-0.5B-Instruct from the verified PyPI "
        "mirror (default: a random-weight model of its shape)",
    )
    args = parser.parse_args()

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiguilleur-bench"
    t0 = time.perf_counter()
    if args.model == "real":
        from aiguilleur.backends import mirror

        model = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    elif args.model:
        model = Path(args.model)
    else:
        model = ensure_model(cache, QWEN25_CODER_05B)
    print(
        f"model: {model} ({model.stat().st_size / 1e6:.0f} MB, ready in "
        f"{time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    source = Path(textwrap.__file__)
    completion = {
        "max_tokens": args.max_tokens,
        "prefix_tokens": args.prefix_tokens,
        "suffix_tokens": args.suffix_tokens,
        "extra_tokens": 0,
        "time_budget_ms": 60_000,
    }
    local: dict[str, Any] = {"n_ctx": 4096, "n_batch": 256}
    if args.threads:
        local["n_threads"] = args.threads
    sections = (args.sections or ("replay,rate,accept" if args.model else "replay")).split(",")
    arms = {
        "a_aiguilleur": ({"completion": completion, "local": local}, args.keystrokes, 1),
        "d_speculative": (
            {"completion": completion, "local": {**local, "speculative": True}},
            args.keystrokes,
            1,
        ),
        "e_no_prefetch": (
            {"completion": {**completion, "prefetch": False}, "local": local},
            args.keystrokes,
            1,
        ),
        "b_no_prefix_reuse": (
            {"completion": completion, "local": {**local, "reuse_prefix": False}},
            # Sample keystrokes spread over the same span.
            args.keystrokes,
            max(1, args.keystrokes // args.baseline_samples),
        ),
    }
    results: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    report: dict[str, Any] = {"args": vars(args), "model": str(model)}
    threads = args.threads or usable_cores()
    if "replay" in sections:
        replay_section(model, source, args, arms, completion, threads, results, raw, report)
    if "rate" in sections:
        report["rates"] = rate_section(model, source, threads)
    if "accept" in sections:
        report["accepts"] = accept_section(model, args, threads)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"replay-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.update(summary=results, keystrokes=raw)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


def replay_section(
    model: Path,
    source: Path,
    args: argparse.Namespace,
    arms: dict[str, Any],
    completion: dict[str, Any],
    threads: int,
    results: dict[str, Any],
    raw: dict[str, Any],
    report: dict[str, Any],
) -> None:
    for name, (options, n, every) in arms.items():
        print(f"running {name} ...", flush=True)
        ks = asyncio.run(run_arm(model, source, args.function, options, n, every))
        if name.startswith("b_"):
            ks = [msgspec.structs.replace(k, typed_through=False) for k in ks]
        results[name] = summarise(name, ks)
        raw[name] = [msgspec.to_builtins(k) for k in ks]

    binary = os.environ.get("LLAMA_SERVER")
    if binary:
        from bench.llama_server import run_llama_server_arm

        print("running c_llama_server ...", flush=True)
        ks = run_llama_server_arm(
            binary, model, source, args.function, completion, 4096, 256, args.keystrokes, threads
        )
        results["c_llama_server"] = summarise("c_llama_server", ks)
        raw["c_llama_server"] = [msgspec.to_builtins(k) for k in ks]
    else:
        print("(c) skipped: set LLAMA_SERVER=/path/to/llama-server to compare with it")

    cols = [
        "requests",
        "typed_through",
        "prompt_tokens_p50",
        "evaluated_tokens_p50",
        "generated_tokens_mean",
        "draft_acceptance",
        "prompt_ms_p50",
        "latency_ms_p50",
        "latency_ms_p90",
        "engine_latency_ms_p50",
        "server_overhead_ms_p50",
        "rpc_overhead_ms_p50",
    ]
    print(f"\n{'metric':<24}" + "".join(f"{n:>20}" for n in results))
    for c in cols:
        print(f"{c:<24}" + "".join(f"{r[c]:>20.1f}" for r in results.values()))
    a = results["a_aiguilleur"]

    def ratio(arm: str, key: str = "latency_ms_p50", of: str = "latency_ms_p50") -> float | None:
        other = results.get(arm)
        return other[key] / a[of] if other and a[of] else None

    ratios = {
        "b_over_a_p50": ratio("b_no_prefix_reuse", "engine_latency_ms_p50"),
        "c_over_a_p50": ratio("c_llama_server"),
        "c_over_a_p90": ratio("c_llama_server", "latency_ms_p90", "latency_ms_p90"),
        "c_over_a_engine_p50": ratio("c_llama_server", "latency_ms_p50", "engine_latency_ms_p50"),
        "d_over_a_engine_p50": ratio(
            "d_speculative", "engine_latency_ms_p50", "engine_latency_ms_p50"
        ),
        "e_over_a_p50": ratio("e_no_prefetch"),
    }
    labels = {
        "b_over_a_p50": "(b) fresh evaluation / (a) aiguilleur, p50",
        "c_over_a_p50": "(c) llama-server / (a) aiguilleur, p50",
        "c_over_a_p90": "(c) llama-server / (a) aiguilleur, p90",
        "c_over_a_engine_p50": "(c) llama-server / (a), requests that reached the engine, p50",
        "d_over_a_engine_p50": "(d) speculative / (a) plain decoding, engine requests, p50",
        "e_over_a_p50": "(e) no prefetch / (a) with prefetch, p50",
    }
    print()
    for key, value in ratios.items():
        if value is not None:
            print(f"{labels[key]}: {value:.2f}x")
    report["ratios"] = ratios


def rate_section(model: Path, source: Path, threads: int, rounds: int = 3) -> dict[str, Any]:
    """Generation speed, plain decoding against llama-bench at the same context depth,
    in interleaved rounds (the machines are shared: a ratio within one round, then the
    median of the rounds), and speculative decoding against plain decoding."""
    from bench.speed import engine_rate, llama_bench_rate

    print(f"\ngeneration rate, {threads} threads, {rounds} rounds ...", flush=True)
    text = source.read_text()
    binary = os.environ.get("LLAMA_BENCH")
    if not binary:
        print("(llama-bench skipped: set LLAMA_BENCH=/path/to/llama-bench to compare with it)")
    rates = []
    bench_ratios: list[float] = []
    spec_ratios: list[float] = []
    for _ in range(rounds):
        plain = engine_rate(model, threads, False, text, 4)
        fast = engine_rate(model, threads, True, text, 4)
        rates += [plain, fast]
        if fast.tokens_per_s and plain.tokens_per_s:
            spec_ratios.append(fast.tokens_per_s / plain.tokens_per_s)
        if binary:
            bench = llama_bench_rate(binary, model, threads, depth=plain.depth, repetitions=2)
            if bench is not None and bench.tokens_per_s:
                rates.append(bench)
                bench_ratios.append(plain.tokens_per_s / bench.tokens_per_s)
    header = f"{'arm':<30}{'depth':>7}{'tokens':>8}{'ms/token':>10}{'tokens/s':>10}"
    print(header + f"{'draft ok%':>10}")
    for r in rates:
        ok = f"{100 * r.accepted / r.drafted:.0f}" if r.drafted else ""
        per = r.ms / max(1, r.tokens)
        print(f"{r.arm:<30}{r.depth:>7}{r.tokens:>8}{per:>10.1f}{r.tokens_per_s:>10.1f}{ok:>10}")
    out: dict[str, Any] = {
        "rates": [{**msgspec.to_builtins(r), "tokens_per_s": r.tokens_per_s} for r in rates]
    }
    if bench_ratios:
        out["plain_over_llama_bench_rounds"] = bench_ratios
        out["plain_over_llama_bench"] = statistics.median(bench_ratios)
        shown = ", ".join(f"{x:.2f}" for x in bench_ratios)
        print(
            f"plain decoding / llama-bench tg: {out['plain_over_llama_bench']:.2f}x "
            f"(median of rounds: {shown})"
        )
    if spec_ratios:
        out["speculative_speedup_rounds"] = spec_ratios
        out["speculative_speedup"] = statistics.median(spec_ratios)
        print(f"speculative / plain decoding, tokens per second: {out['speculative_speedup']:.2f}x")
    return out


def accept_section(model: Path, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    from aiguilleur.backends import mirror
    from bench.humaneval import all_tasks, load_problems
    from bench.speed import accept_chain, summarise_accepts

    problems = load_problems(mirror.fetch(mirror.HUMANEVAL, mirror.weights_dir()))
    tasks = [t for t in all_tasks(problems) if t.half == "held-out" and t.kind != "mid-line"]
    tasks = tasks[:: max(1, len(tasks) // args.accepts)][: args.accepts]
    print(f"\naccept chain: {len(tasks)} tasks, {args.read_ms} ms of reading before Tab")
    rows = {}
    raw = {}
    for name, prefetch in (("with_prefetch", True), ("no_prefetch", False)):
        print(f"running {name} ...", flush=True)
        accepts = asyncio.run(
            accept_chain(model, tasks, threads, prefetch, args.read_ms, args.max_tokens)
        )
        rows[name] = summarise_accepts(name, accepts)
        raw[name] = [msgspec.to_builtins(a) for a in accepts]
    print(f"{'arm':<16}{'accepts':>8}{'prefetched':>11}{'p50 ms':>8}{'p90 ms':>8}")
    for r in rows.values():
        print(
            f"{r['arm']:<16}{r['accepts']:>8}{r['from_prefetch']:>11}"
            f"{r['latency_ms_p50'] or 0:>8.0f}{r['latency_ms_p90'] or 0:>8.0f}"
        )
    return {"summary": rows, "accepts": raw, "read_ms": args.read_ms}


if __name__ == "__main__":
    sys.exit(main())
