"""A team's shared llama-server, measured: `python3 dev.py bench shared`.

One real llama-server (built from llama-cpp-python's sdist by tests/support/llama_server.py,
or LLAMA_SERVER), the real Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Qwen, Apache-2.0) from the
verified PyPI mirror (or `--model`), all the cores for the server, greedy. Sections:
  keystrokes: the server with one slot; (a) aiguilleur through a llama-server route
      retypes a function of an unmodified standard-library file keystroke by keystroke
      (`aiguilleur serve` over stdio; the local model is not loaded), then (b) the same
      keystrokes as llama.vim sends them (/infill, cache_prompt, the same windows), against
      the same server. Per keystroke: the prompt tokens the server evaluated (its own
      `timings.prompt_n`) and the latency, p50/p90.
  sharing: the server with four slots; one developer typing alone, then four typing at
      once (four daemons, each retyping another function): latency and server-evaluated
      tokens per keystroke, p50/p90, alone against shared (a developer's cache evicted
      by another's would show as evaluated tokens).
Prints tables and writes bench/results/shared-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.backends.threads import usable_cores  # noqa: E402
from aiguilleur.commands.replay import Keystroke, ServerProcess, replay  # noqa: E402
from bench.common import isolated_env, write_user_file  # noqa: E402
from bench.llama_server import llama_vim_keystrokes  # noqa: E402
from bench.run import pct  # noqa: E402
from tests.support.llama_server import LlamaServerProcess, llama_server_binary  # noqa: E402

KEY = "bench-team-key"
# Four developers, four functions of unmodified standard-library files.
WORK = [
    ("textwrap", "dedent"),
    ("posixpath", "normpath"),
    ("glob", "_iglob"),
    ("difflib", "get_close_matches"),
]


def source_of(module: str) -> Path:
    return Path(__import__(module).__file__ or "")


def route_config(url: str, completion: dict[str, Any]) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in completion.items())
    return (
        '[keys.team]\nenv = "AIGUILLEUR_BENCH_TEAM_KEY"\n'
        '[[routes.completion]]\nname = "team"\nbackend = "llama-server"\n'
        f'base_url = "{url}"\nkey = "team"\nfirst_token_ms = 600000\n'
        f"[completion]\n{lines}"
    )


async def developer(
    url: str, module: str, function: str, completion: dict[str, Any], keystrokes: int
) -> list[Keystroke]:
    """One developer's `aiguilleur serve` (its own daemon) retyping `function`."""
    with tempfile.TemporaryDirectory(prefix="aiguilleur-shared-") as tmp:
        home = Path(tmp)
        write_user_file(home, route_config(url, completion))
        env = isolated_env(home, AIGUILLEUR_BENCH_TEAM_KEY=KEY)
        async with ServerProcess(home, env=env) as server:
            await server.status()  # initialized; no model to wait for
            source = source_of(module)
            return await replay(
                server, home / source.name, source.read_text(), function, keystrokes=keystrokes
            )


def summary(name: str, ks: list[Keystroke]) -> dict[str, Any]:
    """Per keystroke; "server" columns over the requests that reached the server after
    the first (a cold prompt, shown apart: it is the file's opening, not typing)."""
    asked = [k for k in ks if k.answered and not k.typed_through]
    cold, warm = (asked[0], asked[1:]) if asked else (None, [])
    return {
        "arm": name,
        "keystrokes": len(ks),
        "typed_through": sum(k.typed_through for k in ks),
        "unanswered": sum(not k.answered for k in ks),
        "latency_ms_p50": pct([k.latency_ms for k in ks], 0.5),
        "latency_ms_p90": pct([k.latency_ms for k in ks], 0.9),
        "server_requests": len(warm),
        "evaluated_p50": pct([k.evaluated_tokens for k in warm], 0.5),
        "evaluated_p90": pct([k.evaluated_tokens for k in warm], 0.9),
        "server_ms_p50": pct([k.latency_ms for k in warm], 0.5),
        "server_ms_p90": pct([k.latency_ms for k in warm], 0.9),
        "first_evaluated": cold.evaluated_tokens if cold else float("nan"),
        "first_ms": cold.latency_ms if cold else float("nan"),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    cols = [c for c in rows[0] if c != "arm"]
    print(f"\n{title}\n{'arm':<36}" + "".join(f"{c[:15]:>16}" for c in cols))
    for r in rows:
        print(f"{r['arm']:<36}" + "".join(f"{r[c]:>16.1f}" for c in cols))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a GGUF FIM model (default: the mirrored Qwen 0.5B)")
    parser.add_argument("--keystrokes", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=1024)
    parser.add_argument("--suffix-tokens", type=int, default=128)
    parser.add_argument("--sections", default="keystrokes,sharing")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument(
        "--server-args", default="", help="more llama-server arguments, e.g. '--cache-ram 0'"
    )
    args = parser.parse_args()

    model = (
        Path(args.model)
        if args.model
        else mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    )
    binary = Path(os.environ.get("LLAMA_SERVER") or llama_server_binary())
    completion = {
        "max_tokens": args.max_tokens,
        "prefix_tokens": args.prefix_tokens,
        "suffix_tokens": args.suffix_tokens,
        "extra_tokens": 0,
        "repository_tokens": 0,  # llama.vim's arm has no repository block either
        "time_budget_ms": 60_000,
    }
    logs = Path(tempfile.mkdtemp(prefix="shared-bench-logs-"))
    report: dict[str, Any] = {"args": vars(args), "model": model.name, "binary": str(binary)}
    raw: dict[str, Any] = {}
    print(f"model: {model.name}; server: {binary}; {args.threads} threads", flush=True)
    module, function = WORK[0]

    def start_server(slots: int) -> LlamaServerProcess:
        server = LlamaServerProcess(
            binary,
            model,
            slots=slots,
            threads=args.threads,
            api_key=KEY,
            log_dir=logs,
            extra=tuple(args.server_args.split()),
        )
        server.start()
        return server

    if "keystrokes" in args.sections.split(","):
        server = start_server(1)
        try:
            route = asyncio.run(
                developer(server.url, module, function, completion, args.keystrokes)
            )
            vim = llama_vim_keystrokes(
                server.url,
                model,
                source_of(module),
                function,
                completion,
                args.keystrokes,
                headers={"Authorization": f"Bearer {KEY}"},
            )
        finally:
            server.stop()
        rows = [summary("(a) aiguilleur, llama-server route", route)]
        rows.append(summary("(b) llama.vim's /infill", vim))
        print_table(f"{function}: {args.keystrokes} keystrokes, one slot", rows)
        a, b = rows
        ratios = {
            "latency_p50_a_over_b": a["latency_ms_p50"] / b["latency_ms_p50"],
            "latency_p90_a_over_b": a["latency_ms_p90"] / b["latency_ms_p90"],
            "server_ms_p50_a_over_b": a["server_ms_p50"] / b["server_ms_p50"],
            "server_ms_p90_a_over_b": a["server_ms_p90"] / b["server_ms_p90"],
        }
        for k, v in ratios.items():
            print(f"{k}: {v:.2f}x")
        report["keystrokes"] = {"rows": rows, "ratios": ratios}
        raw["route"] = [msgspec.to_builtins(k) for k in route]
        raw["llama_vim"] = [msgspec.to_builtins(k) for k in vim]

    if "sharing" in args.sections.split(","):
        server = start_server(len(WORK))
        try:
            alone = asyncio.run(
                developer(server.url, module, function, completion, args.keystrokes)
            )

            async def together() -> list[list[Keystroke]]:
                runs = [developer(server.url, m, f, completion, args.keystrokes) for m, f in WORK]
                return list(await asyncio.gather(*runs))

            shared = asyncio.run(together())
        finally:
            server.stop()
        rows = [summary(f"alone: {function}", alone)]
        rows += [summary(f"shared by 4: {f}", ks) for (_, f), ks in zip(WORK, shared, strict=True)]
        everyone = [k for ks in shared for k in ks]
        rows.append(summary("shared by 4: all keystrokes", everyone))
        print_table(f"{len(WORK)} developers, {len(WORK)} slots", rows)
        first, everyone_row = rows[0], rows[-1]
        ratios = {
            "latency_p50_shared_over_alone": everyone_row["latency_ms_p50"]
            / first["latency_ms_p50"],
            "latency_p90_shared_over_alone": everyone_row["latency_ms_p90"]
            / first["latency_ms_p90"],
            "server_ms_p50_shared_over_alone": everyone_row["server_ms_p50"]
            / first["server_ms_p50"],
            "server_ms_p90_shared_over_alone": everyone_row["server_ms_p90"]
            / first["server_ms_p90"],
        }
        for k, v in ratios.items():
            print(f"{k}: {v:.2f}x")
        report["sharing"] = {"rows": rows, "ratios": ratios}
        raw["alone"] = [msgspec.to_builtins(k) for k in alone]
        raw["shared"] = [[msgspec.to_builtins(k) for k in ks] for ks in shared]

    out = ROOT / "bench" / "results" / f"shared-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report["keystrokes_raw"] = raw
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
