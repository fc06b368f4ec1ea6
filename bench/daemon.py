"""One daemon for every window against one server per window, side by side in one run:
`python3 dev.py bench daemon` (or `.venv/bin/python bench/daemon.py`).

On a random-weight GGUF shaped like Qwen2.5-Coder-0.5B (written once, cached), three
editor windows each way:
- memory: the RSS of everything aiguilleur runs (three `serve` processes, against the
  daemon plus three `serve --daemon` shims);
- the second window: from starting its server to its first suggestion, while the first
  window is open (a standalone server loads the model again; the daemon has it);
- a keystroke: p50 latency of a suggestion per typed character, the shim's relay against
  a direct server.
Each arm has its own home (config, caches, runtime dir): nothing carries over. Prints a
table and writes bench/results/daemon-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends.synthetic import QWEN25_CODER_05B, ensure_model  # noqa: E402
from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from bench.common import isolated_env  # noqa: E402

SOURCE = "import os\n\n\ndef greet(name):\n    return 'hello ' + name\n\n\nvalue = \n"
LINE, COLUMN = 7, 8
TYPED = "greet('world') + os.sep * 3"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def first_suggestion(server: ServerProcess, home: Path, name: str) -> None:
    """A file opened in a just-started window, and its first suggestion."""
    uri = server.open(home / f"{name}.py", SOURCE)
    await server.inline(uri, LINE, COLUMN)


async def keystrokes_ms(server: ServerProcess, home: Path) -> list[float]:
    uri = server.open(home / "typed.py", SOURCE)
    out = []
    column = COLUMN
    for ch in TYPED:
        server.insert(uri, LINE, column, ch)
        column += 1
        t0 = time.perf_counter()
        await server.inline(uri, LINE, column)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def arm(name: str, model: Path, daemon: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"aiguilleur-bench-{name}-") as tmp:
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        env = isolated_env(home, XDG_RUNTIME_DIR=str(home / "run"))
        config = home / "c" / "aiguilleur" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            f'[local]\nmodel = "{model}"\n[completion]\nmax_tokens = 8\nprefetch = false\n'
        )
        args = ["--daemon"] if daemon else []
        servers: list[ServerProcess] = []
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(ServerProcess(home, env=env, serve_args=args))
            servers.append(first)
            await first.wait_ready()
            await first.inline(first.open(home / "first.py", SOURCE), LINE, COLUMN)
            # The second window, opened while the first is in use.
            t0 = time.perf_counter()
            second = await stack.enter_async_context(ServerProcess(home, env=env, serve_args=args))
            servers.append(second)
            ready = await second.wait_ready()
            await first_suggestion(second, home, "second")
            second_s = time.perf_counter() - t0
            third = await stack.enter_async_context(ServerProcess(home, env=env, serve_args=args))
            servers.append(third)
            await third.wait_ready()
            await first_suggestion(third, home, "third")
            typed = await keystrokes_ms(first, home)
            pids = [s.pid for s in servers]
            if daemon:
                pids.append(int(ready.pid))  # the daemon itself
            memory = sum(rss_mb(pid) for pid in pids)
        if daemon:
            subprocess.run(
                [sys.executable, "-m", "aiguilleur", "daemon", "stop"],
                env=env,
                capture_output=True,
                timeout=120,
            )
        return {
            "arm": name,
            "processes": len(pids),
            "rss_mb": memory,
            "second_window_first_suggestion_s": second_s,
            "keystroke_ms_p50": statistics.median(typed),
            "keystroke_ms_p90": sorted(typed)[round(0.9 * (len(typed) - 1))],
            "keystrokes": len(typed),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of both arms")
    args = parser.parse_args()
    cache = Path.home() / ".cache" / "aiguilleur-bench"
    model = ensure_model(cache, QWEN25_CODER_05B)
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        rows.append(asyncio.run(arm("standalone x3", model, daemon=False)))
        rows.append(asyncio.run(arm("daemon + 3 shims", model, daemon=True)))
    print(f"\n{'arm':<20}{'procs':>6}{'RSS MB':>9}{'2nd window s':>14}{'key p50':>9}{'p90':>8}")
    for r in rows:
        print(
            f"{r['arm']:<20}{r['processes']:>6}{r['rss_mb']:>9.0f}"
            f"{r['second_window_first_suggestion_s']:>14.2f}"
            f"{r['keystroke_ms_p50']:>9.1f}{r['keystroke_ms_p90']:>8.1f}"
        )
    alone = [r for r in rows if not r["arm"].startswith("daemon")]
    shared = [r for r in rows if r["arm"].startswith("daemon")]
    one_server = statistics.median(r["rss_mb"] for r in alone) / 3
    ratios = {
        "rss_daemon_over_one_standalone": statistics.median(r["rss_mb"] for r in shared)
        / one_server,
        "second_window_daemon_over_standalone": statistics.median(
            r["second_window_first_suggestion_s"] for r in shared
        )
        / statistics.median(r["second_window_first_suggestion_s"] for r in alone),
        "keystroke_p50_added_by_shim_ms": statistics.median(r["keystroke_ms_p50"] for r in shared)
        - statistics.median(r["keystroke_ms_p50"] for r in alone),
    }
    print()
    rss = ratios["rss_daemon_over_one_standalone"]
    print(f"RSS, daemon + 3 shims / one standalone server: {rss:.2f}x (goal <= 1.3x)")
    print(
        "second window's first suggestion, daemon / standalone: "
        f"{ratios['second_window_daemon_over_standalone']:.2f}x (goal <= 0.1x)"
    )
    print(
        "keystroke p50 added by the shim: "
        f"{ratios['keystroke_p50_added_by_shim_ms']:+.1f} ms (goal <= 1 ms)"
    )
    out = ROOT / "bench" / "results" / f"daemon-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": str(model), "rows": rows, "ratios": ratios}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
