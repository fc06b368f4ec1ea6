"""One daemon for every window against one server per window, side by side in one run:
`python3 dev.py bench daemon` (or `.venv/bin/python bench/daemon.py`).

On a random-weight GGUF shaped like Qwen2.5-Coder-0.5B (written once, cached), three
editor windows each way:
- memory: the RSS of everything aiguilleur runs (three `serve --standalone` processes,
  against the daemon plus three `serve` shims);
- the second window: from starting its server to its first suggestion, while the first
  window is open (a standalone server loads the model again; the daemon has it);
- a keystroke: p50 latency of a suggestion per typed character, the shim's relay against
  a direct server;
- kill -9 of the daemon while two windows type, their completions sent to a (fake, on
  loopback) OpenRouter and billed: each request's answers, how long until each window
  has suggestions again, and the ledger's rows against what the fake OpenRouter served.
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
from aiguilleur.remote.ledger import Status  # noqa: E402
from bench.common import isolated_env, write_user_file  # noqa: E402
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter  # noqa: E402

KEY = "sk-or-v1-bench-not-a-secret"

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
        write_user_file(
            home, f'[local]\nmodel = "{model}"\n[completion]\nmax_tokens = 8\nprefetch = false\n'
        )
        args = [] if daemon else ["--standalone"]
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


class Typist:
    """One window typing TYPED a key at a time, a suggestion asked after each key; each
    answer is counted by how it came (pygls' client matches answers to requests by id,
    and would log one that matches nothing)."""

    def __init__(self, server: ServerProcess, uri: str) -> None:
        self.server = server
        self.uri = uri
        self.column = COLUMN
        self.answered = 0
        self.failed: list[str] = []
        self.at: list[tuple[float, bool]] = []  # (when, a suggestion came)

    async def type(self, keys: str, pause_s: float) -> None:
        for ch in keys:
            self.server.insert(self.uri, LINE, self.column, ch)
            self.column += 1
            try:
                text = await asyncio.wait_for(self.server.inline(self.uri, LINE, self.column), 120)
                self.at.append((time.perf_counter(), bool(text)))
            except TimeoutError:
                self.failed.append("no answer in 120 s")
                continue
            except Exception as error:  # the shim's answer for the daemon that died
                self.failed.append(str(error)[:80])
                self.at.append((time.perf_counter(), False))
            self.answered += 1
            await asyncio.sleep(pause_s)


async def kill_while_typing(model: Path) -> dict[str, Any]:
    import logging
    import os
    import signal
    import sqlite3

    unmatched: list[str] = []

    class Unmatched(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "response to unknown message id" in record.getMessage():
                unmatched.append(record.getMessage())

    logging.getLogger("pygls").addHandler(Unmatched(logging.WARNING))
    with (
        tempfile.TemporaryDirectory(prefix="aiguilleur-bench-kill-") as tmp,
        FakeOpenRouter(
            models=[FakeModel("vendor/coder")], keys=[FakeKey(KEY, label="work")]
        ) as fake,
    ):
        fake.stream_delay = 0.005
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        env = isolated_env(home, XDG_RUNTIME_DIR=str(home / "run"), AIGUILLEUR_BENCH_KEY=KEY)
        write_user_file(
            home,
            f'[local]\nmodel = "{model}"\n[completion]\nmax_tokens = 8\nprefetch = false\n'
            f"[cache]\nresponses_mb = 0\n"
            f'[keys.work]\nenv = "AIGUILLEUR_BENCH_KEY"\nbase_url = "{fake.base_url}"\n'
            "daily = 5.0\n"
            '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
            'model = "vendor/coder"\n'
            '[[routes.completion]]\nname = "local"\nbackend = "local"\n',
        )
        async with (
            ServerProcess(home, env=env, serve_args=[]) as a,
            ServerProcess(home, env=env, serve_args=[]) as b,
        ):
            daemon_pid = int((await a.wait_ready()).pid)
            await b.wait_ready()
            typists = [
                Typist(a, a.open(home / "a.py", SOURCE)),
                Typist(b, b.open(home / "b.py", SOURCE)),
            ]
            half = len(TYPED) // 2
            await asyncio.gather(*(t.type(TYPED[:half], 0.05) for t in typists))
            # Both keep typing; the daemon dies while their requests are on the way.
            typing = [asyncio.ensure_future(t.type(TYPED[half:], 0.05)) for t in typists]
            await asyncio.sleep(0.12)
            killed_at = time.perf_counter()
            os.kill(daemon_pid, signal.SIGKILL)
            await asyncio.gather(*typing)
            recovered_s = [
                min((when for when, got in t.at if when > killed_at and got), default=float("nan"))
                - killed_at
                for t in typists
            ]
            new_pid = int((await a.status()).pid)
            told = [m for t in typists for m in t.server.messages if "daemon stopped" in m]
        subprocess.run(
            [sys.executable, "-m", "aiguilleur", "daemon", "stop"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        with sqlite3.connect(home / "d" / "aiguilleur" / "ledger.db") as db:
            rows = db.execute("SELECT status, generation_id FROM requests").fetchall()
        settled = [g for status, g in rows if status == Status.SETTLED.value]
    asked = sum(len(TYPED) for _ in typists)
    return {
        "requests": asked,
        "answered": sum(t.answered for t in typists),
        "answered_with_error": sum(len(t.failed) for t in typists),
        "errors": sorted({e for t in typists for e in t.failed}),
        "answers_to_nothing": len(unmatched),
        "recovered_s": recovered_s,
        "told": len(told),
        "new_daemon": new_pid != daemon_pid,
        "served_by_fake": len(fake.generations),
        "ledger_settled": len(settled),
        "ledger_settled_distinct": len(set(settled)),
        "ledger_settled_known_to_fake": len(set(settled) & set(fake.generations)),
        "ledger_unknown": sum(1 for status, _ in rows if status == Status.UNKNOWN.value),
        "ledger_reserved": sum(1 for status, _ in rows if status == Status.RESERVED.value),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of both arms")
    args = parser.parse_args()
    cache = Path.home() / ".cache" / "aiguilleur-bench"
    model = ensure_model(cache, QWEN25_CODER_05B)
    kills = [asyncio.run(kill_while_typing(model)) for _ in range(args.rounds)]
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
    print("\nkill -9 of the daemon while two windows type (completions billed via OpenRouter):")
    print(
        f"{'requests':>9}{'answered':>9}{'errors':>7}{'to nothing':>11}{'told':>5}"
        f"{'back after s':>16}{'fake served':>12}{'settled':>8}{'distinct':>9}{'unknown':>8}"
        f"{'pending':>8}"
    )
    for k in kills:
        back = "/".join(f"{s:.2f}" for s in k["recovered_s"])
        print(
            f"{k['requests']:>9}{k['answered']:>9}{k['answered_with_error']:>7}"
            f"{k['answers_to_nothing']:>11}{k['told']:>5}{back:>16}{k['served_by_fake']:>12}"
            f"{k['ledger_settled']:>8}{k['ledger_settled_distinct']:>9}{k['ledger_unknown']:>8}"
            f"{k['ledger_reserved']:>8}"
        )
    out = ROOT / "bench" / "results" / f"daemon-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"model": str(model), "rows": rows, "ratios": ratios, "kill_9": kills}, indent=2)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
