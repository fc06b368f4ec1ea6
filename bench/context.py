"""Does the repository block hold what a line needs? `python3 dev.py bench context`.

Cross-file tasks from real multi-module packages nobody here wrote (their sources as pip
installed them), by the CrossCodeEval recipe: a line of one module whose rest uses a
name (a function, class, method or attribute) defined in another module of the same
package, and named nowhere else in the cursor's file; the cursor sits right before that
name. Split by package into a tuning half (packages installed beside aiguilleur) and a held-out
half (pinned wheels fetched from PyPI for this bench alone).

Model-independent: for each task, whether the block that context/retrieval.py builds for
the cursor (the definitions of what the code near it imports and uses, with the members
of the classes among them) holds the definition the line needs, at several budgets, and
how long building it takes. Prints a table per half and writes
bench/results/context-*.json with every task.

`--sections replay` (in the default run too): what the block costs as the user types.
A method of httpx's client is retyped keystroke by keystroke through `aiguilleur serve`,
in a checkout of httpx as the workspace (indexed first), on the real
Qwen2.5-Coder-0.5B-Instruct Q4_K_M (a random-weight model's tokenizer reads a byte per
token, which no block fits); arms side by side in one run: the block on (the default budget)
and off. Tokens evaluated per keystroke, latency, and the server's own time per request
(context building and retrieval included).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import io
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path

import jedi

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.commands.replay import Keystroke, ServerProcess, replay  # noqa: E402
from aiguilleur.context.block import RepositoryBlock  # noqa: E402
from aiguilleur.context.index import RepositoryIndex, store_dir  # noqa: E402
from aiguilleur.context.retrieval import SIMILAR, dependencies  # noqa: E402
from bench.common import isolated_env  # noqa: E402
from bench.run import pct, summarise  # noqa: E402

# Tuning: packages installed beside aiguilleur (their misses were read while retrieval was
# designed). Held out: wheels fetched from PyPI for this bench alone, pinned; nothing was
# tuned on them (first measured 2026-12-05, after the design of the receiver heuristic).
TUNING = (
    *("httpx", "click", "anyio", "h11", "jinja2"),
    *("huggingface_hub", "_pytest", "httpcore", "fsspec", "cattrs", "pygls"),
)
HELD_OUT = (
    *("rich==13.9.4", "requests==2.32.3", "werkzeug==3.1.3", "flask==3.1.0"),
    *("starlette==0.41.3", "pydantic==2.10.4", "sqlalchemy==2.0.36", "typer==0.15.1"),
)
WHEELS = Path.home() / ".cache" / "aiguilleur-bench" / "wheels"
BUDGETS = (256, 512, 1024, 2048, 100_000)
DEFAULT = 1024  # the default of `[completion] repository_tokens`
BUILTINS = frozenset(dir(builtins)) | frozenset(dir(object)) | frozenset(dir(dict))
TASKS_PER_PACKAGE = 60


def held_out_package(pin: str, into: Path) -> Path | None:
    """The package of a pinned wheel from PyPI (pip checks its hash; kept between runs),
    unpacked under `into`."""
    name, version = pin.split("==")

    def cached() -> Path | None:
        prefix = f"{name}-{version}-".lower()
        return next((w for w in WHEELS.glob("*.whl") if w.name.lower().startswith(prefix)), None)

    WHEELS.mkdir(parents=True, exist_ok=True)
    wheel = cached()
    if wheel is None:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*pip, "-q", "-d", str(WHEELS), pin], check=True)
        wheel = cached()
    if wheel is None:
        return None
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.startswith(f"{name}/") and m.endswith(".py")]
        z.extractall(into, members)
    return into / name if (into / name).is_dir() else None


def site_packages() -> Path:
    import httpx

    return Path(httpx.__file__).resolve().parent.parent


def tasks_of(package: Path, index: RepositoryIndex, rng: random.Random) -> list[dict[str, object]]:
    """Attribute and method uses (`x.name`, in code, not in strings or comments) that
    resolve, by jedi's static analysis, to a definition in another module of the
    package, and whose name appears nowhere else in the cursor's file (so the file cannot
    tell the model); one task per line, at most TASKS_PER_PACKAGE per package.

    jedi decides what a use really names, as CrossCodeEval's static analysis does: a name
    the package defines can be a homonym on the line (`thread.start()` is the standard
    library's, `response.content` another package's), which no retriever should be asked
    to find; a use jedi cannot resolve is left out too."""
    defined: set[str] = set()
    for f in index.files():
        for d in f.symbols.definitions:
            if not d.name.startswith("__") and d.name not in BUILTINS:
                defined.add(d.name)
    candidates = []
    for f in index.files():
        if not f.path.endswith(".py"):
            continue
        text = (index.root / f.path).read_text(encoding="utf-8", errors="replace")
        starts = [0]
        for line in text.split("\n"):
            starts.append(starts[-1] + len(line) + 1)
        counts: dict[str, int] = {}
        uses: list[tuple[str, int, int]] = []
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            continue
        in_import, previous = False, None
        for tok in tokens:
            if tok.type == tokenize.NAME:
                counts[tok.string] = counts.get(tok.string, 0) + 1
                if tok.string in ("import", "from") and previous is None:
                    in_import = True
                elif previous is not None and previous.string == "." and not in_import:
                    uses.append((tok.string, tok.start[0] - 1, tok.start[1]))
            if tok.type in (tokenize.NEWLINE, tokenize.NL):
                if tok.type == tokenize.NEWLINE:  # a logical line's end: an import's too
                    in_import = False
                previous = None
                continue
            if tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
                previous = tok
        taken: set[int] = set()
        lines = text.split("\n")
        for name, row, col in uses:
            if name not in defined or len(name) < 4 or row in taken:
                continue
            on_line = len(re.findall(rf"(?<![\w]){re.escape(name)}(?![\w])", lines[row]))
            if counts.get(name, 0) != on_line:
                continue  # named elsewhere in the file: not a cross-file task
            taken.add(row)
            candidates.append((f.path, text, row, col, name, starts))
    rng.shuffle(candidates)
    project = jedi.Project(index.root)
    found: list[dict[str, object]] = []
    for path, text, row, col, name, starts in candidates:
        if len(found) == TASKS_PER_PACKAGE:
            break
        homes = _resolved(project, index.root, path, text, row, col)
        if not homes:
            continue  # unresolved, a homonym from elsewhere, or this file's own
        at = starts[row] + col
        found.append(
            {
                "file": path,
                "line": row,
                "name": name,
                "homes": homes,
                "offset": at,
                "text": text[:at] + "\n" + text[starts[row + 1] :],  # the rest of the line gone
                "expected": text.split("\n")[row][col:],
            }
        )
    return found


def _resolved(
    project: jedi.Project, root: Path, path: str, text: str, row: int, col: int
) -> list[str]:
    """The other files of the package (relative paths) where jedi finds the definition
    that the name at row/col uses."""
    try:
        names = jedi.Script(text, path=root / path, project=project).goto(
            row + 1, col, follow_imports=True
        )
    except Exception:  # jedi's own failures on odd code: the use is left out
        return []
    homes = set()
    for n in names:
        module = n.module_path
        if module is None:
            continue
        try:
            rel = Path(module).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue  # outside the checkout: another package's, or the standard library's
        if rel != path:
            homes.add(rel)
    return sorted(homes)


def hit(chunks: tuple[object, ...], task: dict[str, object]) -> bool:
    name = str(task["name"])
    homes = set(task["homes"])  # type: ignore[call-overload]
    pattern = re.compile(rf"(?m)^\s*(?:async def |def |class )?{re.escape(name)}\b")
    return any(c.path in homes and pattern.search(c.text) for c in chunks)  # type: ignore[attr-defined]


def package_tasks(
    packages: tuple[str, ...], cache: Path, rng: random.Random
) -> Iterator[tuple[str, RepositoryIndex, list[dict[str, object]]]]:
    """Per package: its name, the index of a checkout of it, its tasks."""
    base = site_packages()
    for pin in packages:
        name = pin.split("==")[0]
        root = base / name if "==" not in pin else held_out_package(pin, cache / "wheels" / name)
        if root is None or not root.is_dir():
            print(f"  {name}: not found, skipped")
            continue
        # A checkout of its own: the package's directory inside the workspace's root, as
        # in a repository (site-packages holds every other package too).
        checkout = cache / "trees" / name
        if not checkout.exists():
            shutil.copytree(root, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        index = RepositoryIndex(checkout, store_dir(cache, checkout))
        index.refresh()
        try:
            yield name, index, tasks_of(checkout, index, rng)
        finally:
            index.close()


def run(packages: tuple[str, ...], cache: Path, rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for name, index, tasks in package_tasks(packages, cache, rng):
        for task in tasks:
            text, offset = str(task["text"]), int(task["offset"])  # type: ignore[call-overload]
            result: dict[str, object] = {k: task[k] for k in ("file", "line", "name", "homes")}
            result["package"] = name
            for budget in BUDGETS:
                t0 = time.perf_counter()
                chunks = dependencies(
                    index, str(task["file"]), text, offset, budget, similar=SIMILAR
                )
                ms = (time.perf_counter() - t0) * 1000
                result[f"hit_{budget}"] = hit(chunks, task)
                result[f"ms_{budget}"] = ms
                result[f"chars_{budget}"] = sum(len(c.text) for c in chunks)
            # As the block is kept: built when the cursor entered the function, before
            # this line was typed (its indentation only).
            start = text.rfind("\n", 0, offset) + 1
            indent = text[start:offset][
                : len(text[start:offset]) - len(text[start:offset].lstrip())
            ]
            entry = text[:start] + indent + text[offset:]
            block = RepositoryBlock()
            path = str(task["file"])
            chunks = block.chunks(index, path, entry, start + len(indent), DEFAULT)
            result["hit_entry"] = hit(chunks, task)
            # Then the line typed up to the cursor: the keystroke keeps that block, and
            # the server proposes one for a receiver it lacks, adopted after a pause.
            proposed = block.propose(index, path, text, offset, DEFAULT)
            if proposed is not None:
                block.adopt(proposed)
            result["hit_paused"] = hit(block.chunks(index, path, text, offset, DEFAULT), task)
            rows.append(result)
    return rows


def table(half: str, rows: list[dict[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {"half": half, "tasks": len(rows)}
    print(f"\n{half}: {len(rows)} tasks from {len({r['package'] for r in rows})} packages")
    print(f"  {'budget (tokens)':>16} {'recall %':>9} {'block chars p50':>16} {'build ms p50':>13}")
    for b in BUDGETS:
        recall = 100 * sum(bool(r[f"hit_{b}"]) for r in rows) / max(1, len(rows))
        chars = statistics.median(float(r[f"chars_{b}"]) for r in rows) if rows else 0.0  # type: ignore[arg-type]
        ms = statistics.median(float(r[f"ms_{b}"]) for r in rows) if rows else 0.0  # type: ignore[arg-type]
        out[f"recall_{b}"] = recall
        out[f"build_ms_p50_{b}"] = ms
        print(f"  {b:>16} {recall:>9.1f} {chars:>16.0f} {ms:>13.2f}")
    entry = 100 * sum(bool(r["hit_entry"]) for r in rows) / max(1, len(rows))
    out["recall_entry"] = entry
    paused = 100 * sum(bool(r["hit_paused"]) for r in rows) / max(1, len(rows))
    out["recall_paused"] = paused
    print(
        f"  recall at {DEFAULT} tokens of the block as kept (built when the cursor entered the "
        f"function, before the line was typed): {entry:.1f} %; after a pause at the cursor "
        f"(the block proposed for the receiver typed, adopted): {paused:.1f} %"
    )
    per_package: dict[str, list[bool]] = {}
    for r in rows:
        per_package.setdefault(str(r["package"]), []).append(bool(r["hit_1024"]))
    print(
        "  recall at 1024 per package: "
        + ", ".join(f"{p} {100 * sum(h) / len(h):.0f} % ({len(h)})" for p, h in per_package.items())
    )
    return out


REPLAY_FILE, REPLAY_FUNCTION = "_client.py", "_send_single_request"


async def _replay_arm(
    workspace: Path, model: Path, budget: int, keystrokes: int
) -> list[Keystroke]:
    with tempfile.TemporaryDirectory(prefix="aiguilleur-bench-") as tmp:
        options = {
            "local": {"model": str(model), "n_ctx": 4096, "n_batch": 256},
            "completion": {"max_tokens": 8, "time_budget_ms": 60_000, "repository_tokens": budget},
        }
        async with ServerProcess(
            workspace, env=isolated_env(Path(tmp)), init_options=options
        ) as server:
            await server.wait_ready()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # the workspace indexed before typing starts
                index = (await server.status()).index
                if index is not None and index.updated > 0:
                    break
                await asyncio.sleep(0.1)
            source = workspace / "httpx" / REPLAY_FILE
            return await replay(
                server, source, source.read_text(), REPLAY_FUNCTION, keystrokes=keystrokes
            )


def replay_section(keystrokes: int, cache: Path) -> dict[str, object]:
    """The block's cost as the user types: on and off, side by side."""
    model = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    workspace = cache / "replay"
    shutil.copytree(
        site_packages() / "httpx", workspace / "httpx", ignore=shutil.ignore_patterns("__pycache__")
    )
    out: dict[str, object] = {"file": f"httpx/{REPLAY_FILE}", "function": REPLAY_FUNCTION}
    print(f"\nreplay: {REPLAY_FUNCTION} of httpx/{REPLAY_FILE} retyped, {keystrokes} keystrokes")
    print(
        f"  {'arm':<22}{'evaluated p50':>14}{'p90':>6}{'prompt p50':>11}{'latency p50':>12}"
        f"{'p90':>8}{'engine p50':>11}{'first':>8}{'ours ms p50':>12}"
    )
    for name, budget in (("block (1024 tokens)", DEFAULT), ("no block", 0)):
        ks = asyncio.run(_replay_arm(workspace, model, budget, keystrokes))
        engine = [k for k in ks if not k.typed_through]
        row = summarise(name, ks)
        row["evaluated_tokens_p90"] = pct([k.evaluated_tokens for k in engine], 0.9)
        row["first_latency_ms"] = ks[0].latency_ms if ks else float("nan")
        # The server's own time (context building and retrieval included) on the
        # requests that reached the engine: typed-through ones build no prompt.
        row["ours_ms_p50"] = pct([k.server_ms for k in engine[1:]], 0.5)
        out[name] = row
        print(
            f"  {name:<22}{row['evaluated_tokens_p50']:>14.0f}{row['evaluated_tokens_p90']:>6.0f}"
            f"{row['prompt_tokens_p50']:>11.0f}{row['latency_ms_p50']:>12.1f}"
            f"{row['latency_ms_p90']:>8.1f}{row['engine_latency_ms_p50']:>11.1f}"
            f"{row['first_latency_ms']:>8.0f}{row['ours_ms_p50']:>12.2f}"
        )
    on, off = out["block (1024 tokens)"], out["no block"]
    for key in ("latency_ms_p50", "engine_latency_ms_p50"):
        ratio = on[key] / off[key]  # type: ignore[index]
        out[f"{key}_ratio"] = ratio
        print(f"  {key}, block on / off: {ratio:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--half",
        choices=("tuning", "held-out", "both"),
        default="both",
        help="tune on `tuning` alone; `both` for a report",
    )
    parser.add_argument(
        "--sections", default="recall,replay", help="recall (the block's content), replay"
    )
    parser.add_argument("--keystrokes", type=int, default=120)
    parser.add_argument(
        "--packages",
        default="",
        help="installed packages to use as the tuning half instead (comma-separated), to "
        "study misses on code not tuned on yet; never a held-out one",
    )
    args = parser.parse_args()
    tuning_packages = tuple(args.packages.split(",")) if args.packages else TUNING
    if set(tuning_packages) & {pin.split("==")[0] for pin in HELD_OUT}:
        parser.error("a held-out package cannot be tuned on")
    sections = args.sections.split(",")
    rng = random.Random(args.seed)
    tuning: list[dict[str, object]] = []
    held_out: list[dict[str, object]] = []
    replayed: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as cache:
        if "recall" in sections:
            tuning = run(tuning_packages, Path(cache), rng) if args.half != "held-out" else []
            # Its own generator: the held-out tasks are the same whichever halves run.
            if args.half != "tuning":
                held_out = run(HELD_OUT, Path(cache), random.Random(args.seed))
        if "replay" in sections:
            replayed = replay_section(args.keystrokes, Path(cache))
    summary = []
    if tuning:
        summary.append(table("tuning", tuning))
    if held_out:
        summary.append(table("held-out", held_out))
    out = ROOT / "bench" / "results" / f"context-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"summary": summary, "replay": replayed, "tuning": tuning, "held_out": held_out})
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
