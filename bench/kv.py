"""KV state store bench: `python3 dev.py bench kv` (or `.venv/bin/python bench/kv.py`).

Through `aiguilleur serve` over stdio, on the random-weight Qwen2.5-Coder-0.5B-shaped
GGUF of the replay bench (8 generated tokens per request in every arm):

  restart    a ~2,000-token context; a suggestion from a fresh start (nothing on disk),
             then everything stops (the daemon too) and starts again; the first
             suggestion after the restart against the fresh one, through the daemon and
             standalone, and where the time goes: the window's start (the daemon's),
             the model's load, and in the suggestion the wait, the restore of the stored
             state, the evaluation of what it lacked, the generation;
  switching  three files, ~1,000 tokens of context each; the user types one character
             and asks for a suggestion in each file in turn, several rounds: p50 latency
             of the revisits, (a) vs (b);
  memory     RSS of the server after the switching run, against model file + RAM tier
             + 200 MB.

Also reports bytes per token of a state and restore/save time per MB. Prints a table and
writes bench/results/kv-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends.synthetic import QWEN25_CODER_05B, ensure_model  # noqa: E402
from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from aiguilleur.lsp.protocol import client_process  # noqa: E402
from bench.common import isolated_env, write_user_file  # noqa: E402

STORE_OFF = {"kv_ram_mb": 0, "kv_disk_mb": 0}


def options(model: Path, args: argparse.Namespace, prefix: int, store: bool) -> dict[str, Any]:
    return {
        "local": {"model": str(model), "n_ctx": 4096, "n_batch": 256},
        "completion": {
            "max_tokens": args.max_tokens,
            "prefix_tokens": prefix,
            "suffix_tokens": args.suffix_tokens,
            "extra_tokens": 0,
            "time_budget_ms": 120_000,
        },
        "cache": {"kv_ram_mb": args.ram_mb} if store else STORE_OFF,
    }


async def ask(server: ServerProcess, uri: str, line: int, col: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    await server.inline(uri, line, col)
    latency = (time.perf_counter() - t0) * 1000
    last = await server.last(uri)
    u = last.usage
    return {
        "latency_ms": latency,
        "ttft_ms": u.queue_ms + u.prompt_ms,  # the first token's logits are ready then
        "queue_ms": u.queue_ms,
        "prompt_ms": u.prompt_ms,
        "generation_ms": u.generation_ms,
        "prompt_tokens": u.prompt_tokens,
        "evaluated_tokens": u.evaluated_tokens,
        "restored_tokens": u.restored_tokens,
        "restore_ms": u.restore_ms,
        "completion_tokens": u.completion_tokens,
        "typed_through": bool(last.typed_through),
    }


async def engine_stats(server: ServerProcess) -> dict[str, Any]:
    s = await server.status()
    e = s.engine
    kv = s.kv
    return {
        "restored": e.restored,
        "restored_bytes": e.restored_bytes,
        "restore_ms": e.restore_ms,
        "saved": e.saved,
        "saved_bytes": e.saved_bytes,
        "saved_tokens": e.saved_tokens,
        "save_ms": e.save_ms,
        "kv_ram_bytes": kv.ram_bytes if kv else 0,
        "kv_disk_bytes": kv.disk_bytes if kv else 0,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def user_file(model: Path, args: argparse.Namespace, prefix: int) -> str:
    """The user config of the restart arm: a daemon reads the user file only."""
    return (
        f'[local]\nmodel = "{model}"\nn_ctx = 4096\nn_batch = 256\n'
        f"[completion]\nmax_tokens = {args.max_tokens}\nprefix_tokens = {prefix}\n"
        f"suffix_tokens = {args.suffix_tokens}\nextra_tokens = 0\ntime_budget_ms = 120000\n"
        f"[cache]\nkv_ram_mb = {args.ram_mb}\n"
    )


async def window_start(
    home: Path, env: dict[str, str], mode: str, path: Path, source: str, line: int
) -> dict[str, Any]:
    """An editor window opened on `path`: how long its server (and daemon) took to start,
    the model to load, and the first suggestion, with the suggestion's own split."""
    serve_args = [] if mode == "daemon" else ["--standalone"]
    col = len(source.splitlines()[line])
    t0 = time.perf_counter()
    async with ServerProcess(home, env=env, serve_args=serve_args) as server:
        t_init = time.perf_counter()
        await server.wait_ready()
        t_ready = time.perf_counter()
        uri = server.open(path, source)
        first = await ask(server, uri, line, col)
        t_answer = time.perf_counter()
    accounted = first["queue_ms"] + first["prompt_ms"] + first["generation_ms"]
    return {
        **first,
        "start_ms": (t_init - t0) * 1000,
        "load_ms": (t_ready - t_init) * 1000,
        "evaluate_ms": first["prompt_ms"] - first["restore_ms"],
        "other_ms": first["latency_ms"] - accounted,
        "start_to_suggestion_ms": (t_answer - t0) * 1000,
    }


def stop_daemon(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "aiguilleur", "daemon", "stop"],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )


async def restart_arm(model: Path, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    source = Path(textwrap.__file__).read_text()
    with tempfile.TemporaryDirectory(prefix="aiguilleur-kvbench-") as tmp:
        home = Path(tmp)
        env = isolated_env(home)
        write_user_file(home, user_file(model, args, 2048))
        path = home / "textwrap.py"
        runs = {}
        for run in ("fresh", "after_restart"):
            runs[run] = await window_start(home, env, mode, path, source, args.restart_line)
            if mode == "daemon":
                stop_daemon(env)  # everything stops: the next window starts a new daemon
    return runs


SWITCH_FILES = (("shlex", 200), ("csv", 250), ("string", 200))


async def switching_arm(model: Path, args: argparse.Namespace, store: bool) -> dict[str, Any]:
    import importlib

    docs = []
    for name, line in SWITCH_FILES:
        text = Path(importlib.import_module(name).__file__ or "").read_text()
        docs.append((name, text, line))
    with tempfile.TemporaryDirectory(prefix="aiguilleur-kvbench-") as tmp:
        home = Path(tmp)
        opts = options(model, args, 1024, store)
        async with ServerProcess(home, env=isolated_env(home), init_options=opts) as server:
            await server.wait_ready()
            pid = client_process(server.client).pid
            rss_before = rss_mb(pid)
            open_docs = []
            for name, text, line in docs:
                uri = server.open(home / f"{name}.py", text)
                open_docs.append([uri, line, len(text.splitlines()[line]), 1])
            # One version counter per document (ServerProcess tracks a single one).
            requests = []
            for rnd in range(args.rounds):
                for i, doc in enumerate(open_docs):
                    uri, line, col, version = doc
                    # The user types one character where they left off, then waits.
                    version += 1
                    server.version = version - 1
                    server.insert(uri, line, col, "z")
                    col += 1
                    doc[2], doc[3] = col, version
                    r = await ask(server, uri, line, col)
                    r.update(round=rnd, file=SWITCH_FILES[i][0])
                    requests.append(r)
            stats = await engine_stats(server)
            rss_after = rss_mb(pid)
    return {"requests": requests, "engine": stats, "rss_before_mb": rss_before, "rss_mb": rss_after}


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--suffix-tokens", type=int, default=128)
    parser.add_argument("--ram-mb", type=int, default=256, help="RAM tier of arm (a)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--restart-line", type=int, default=300)
    parser.add_argument("--restart-only", action="store_true", help="skip the switching arm")
    args = parser.parse_args()

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiguilleur-bench"
    model = ensure_model(cache, QWEN25_CODER_05B)
    model_mb = model.stat().st_size / (1 << 20)
    print(f"model: {model} ({model_mb:.0f} MB)", flush=True)

    out: dict[str, Any] = {"args": vars(args), "model": str(model)}
    for mode in ("daemon", "standalone"):
        print(f"running restart {mode} ...", flush=True)
        out.setdefault("restart", {})[mode] = asyncio.run(restart_arm(model, args, mode))
    for arm, store in (("a_store", True), ("b_no_store", False)):
        if args.restart_only:
            break
        print(f"running switching {arm} ...", flush=True)
        out.setdefault("switching", {})[arm] = asyncio.run(switching_arm(model, args, store))

    restarts = out["restart"]

    def revisits(arm: dict[str, Any], key: str) -> list[float]:
        return [float(r[key]) for r in arm["requests"][n_files:]]

    def switch(key: str) -> tuple[float, float]:
        return p50(revisits(sa, key)), p50(revisits(sb, key))

    split = [
        ("window start (daemon's too) ms", "start_ms"),
        ("model load ms", "load_ms"),
        ("1st suggestion ms", "latency_ms"),
        ("  waiting for the engine ms", "queue_ms"),
        ("  restoring the stored state ms", "restore_ms"),
        ("  evaluating ms", "evaluate_ms"),
        ("  evaluated tokens", "evaluated_tokens"),
        ("  restored tokens", "restored_tokens"),
        ("  generating ms", "generation_ms"),
        ("  the rest (protocol, shim) ms", "other_ms"),
        ("start to 1st suggestion ms", "start_to_suggestion_ms"),
    ]
    heads = [f"{m} {r}" for m in restarts for r in ("fresh", "restart")]
    title = f"\nrestart ({args.restart_line} lines in)"
    print(title.ljust(38) + "".join(f"{h:>19}" for h in heads))
    for label, key in split:
        values = [restarts[m][r][key] for m in restarts for r in ("fresh", "after_restart")]
        print(f"{label:<38}" + "".join(f"{v:>19.1f}" for v in values))
    ratios = {
        mode: runs["fresh"]["latency_ms"] / runs["after_restart"]["latency_ms"]
        for mode, runs in restarts.items()
    }
    for mode, ratio in ratios.items():
        print(f"restart {mode}: 1st suggestion, fresh / after restart: {ratio:.1f}x (target 20x)")
    if args.restart_only:
        out["summary"] = {f"restart_ratio_{mode}": ratio for mode, ratio in ratios.items()}
        return write(out)

    sa, sb = out["switching"]["a_store"], out["switching"]["b_no_store"]
    n_files = len(SWITCH_FILES)
    rows: list[tuple[str, tuple[float, float]]] = [
        ("switch: revisits", (len(revisits(sa, "latency_ms")), len(revisits(sb, "latency_ms")))),
        ("switch: prompt tokens p50", switch("prompt_tokens")),
        ("switch: evaluated tokens p50", switch("evaluated_tokens")),
        ("switch: restored tokens p50", switch("restored_tokens")),
        ("switch: latency ms p50", switch("latency_ms")),
        ("switch: server RSS MB", (sa["rss_mb"], sb["rss_mb"])),
    ]
    print(f"\n{'metric':<32}{'(a) store':>14}{'(b) no store':>14}")
    for label, (a, b) in rows:
        print(f"{label:<32}{a:>14.1f}{b:>14.1f}")

    switch_ratio = p50(revisits(sb, "latency_ms")) / p50(revisits(sa, "latency_ms"))
    e = sa["engine"]
    bytes_per_token = e["saved_bytes"] / e["saved_tokens"] if e["saved_tokens"] else float("nan")
    restore_mb = e["restored_bytes"] / (1 << 20)
    restore_ms = e["restore_ms"]
    save_mb = e["saved_bytes"] / (1 << 20)
    budget = model_mb + args.ram_mb + 200
    summary = {
        "restart_ratio_daemon": ratios["daemon"],
        "restart_ratio_standalone": ratios["standalone"],
        "switch_p50_ratio": switch_ratio,
        "bytes_per_token": bytes_per_token,
        "restore_ms_per_mb": restore_ms / restore_mb if restore_mb else None,
        "save_ms_per_mb": e["save_ms"] / save_mb if save_mb else None,
        "rss_mb": sa["rss_mb"],
        "rss_budget_mb": budget,
    }
    out["summary"] = summary
    print(f"switching, p50 latency of revisits, (b)/(a): {switch_ratio:.1f}x (target >= 10x)")
    print(f"state size: {bytes_per_token / 1024:.1f} KiB per token")
    if summary["restore_ms_per_mb"] is not None:
        print(f"restore: {summary['restore_ms_per_mb']:.2f} ms per MB (llama_state_seq_set_data)")
    if summary["save_ms_per_mb"] is not None:
        print(f"save: {summary['save_ms_per_mb']:.2f} ms per MB (get_data + copy)")
    print(
        f"server RSS with the store: {sa['rss_mb']:.0f} MB; budget model {model_mb:.0f} + "
        f"RAM tier {args.ram_mb} + 200 = {budget:.0f} MB "
        f"({'within' if sa['rss_mb'] <= budget else 'OVER'})"
    )
    return write(out)


def write(out: dict[str, Any]) -> int:
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"kv-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
