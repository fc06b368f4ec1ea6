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
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiguilleur.context.index import RepositoryIndex, store_dir  # noqa: E402
from aiguilleur.context.retrieval import dependencies  # noqa: E402

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
    """Attribute and method uses (`x.name`, in code, not in strings or comments) whose
    name is defined in another module of the package, not in this file, and named
    nowhere else in it (so the file cannot tell the model); one task per line."""
    defined: dict[str, set[str]] = {}
    for f in index.files():
        for d in f.symbols.definitions:
            if not d.name.startswith("__") and d.name not in BUILTINS:
                defined.setdefault(d.name, set()).add(f.path)
    found = []
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
        for name, row, col in uses:
            homes = defined.get(name, set())
            if not homes or f.path in homes or len(name) < 4 or row in taken:
                continue  # defined here too, or nowhere in the package
            on_line = len(re.findall(rf"(?<![\w]){re.escape(name)}(?![\w])", text.split("\n")[row]))
            if counts.get(name, 0) != on_line:
                continue  # named elsewhere in the file: not a cross-file task
            at = starts[row] + col
            taken.add(row)
            found.append(
                {
                    "file": f.path,
                    "line": row,
                    "name": name,
                    "homes": sorted(homes),
                    "offset": at,
                    "text": text[:at] + "\n" + text[starts[row + 1] :],  # the rest of the line gone
                }
            )
    rng.shuffle(found)
    return found[:TASKS_PER_PACKAGE]


def hit(chunks: tuple[object, ...], task: dict[str, object]) -> bool:
    name = str(task["name"])
    homes = set(task["homes"])  # type: ignore[call-overload]
    pattern = re.compile(rf"(?m)^\s*(?:async def |def |class )?{re.escape(name)}\b")
    return any(c.path in homes and pattern.search(c.text) for c in chunks)  # type: ignore[attr-defined]


def run(packages: tuple[str, ...], cache: Path, rng: random.Random) -> list[dict[str, object]]:
    rows = []
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
        shutil.copytree(root, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        index = RepositoryIndex(checkout, store_dir(cache, checkout))
        index.refresh()
        tasks = tasks_of(checkout, index, rng)
        for task in tasks:
            text, offset = str(task["text"]), int(task["offset"])  # type: ignore[call-overload]
            result: dict[str, object] = {k: task[k] for k in ("file", "line", "name", "homes")}
            result["package"] = name
            for budget in BUDGETS:
                t0 = time.perf_counter()
                chunks = dependencies(index, str(task["file"]), text, offset, budget)
                ms = (time.perf_counter() - t0) * 1000
                result[f"hit_{budget}"] = hit(chunks, task)
                result[f"ms_{budget}"] = ms
                result[f"chars_{budget}"] = sum(len(c.text) for c in chunks)
            rows.append(result)
        index.close()
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
    per_package: dict[str, list[bool]] = {}
    for r in rows:
        per_package.setdefault(str(r["package"]), []).append(bool(r["hit_1024"]))
    print(
        "  recall at 1024 per package: "
        + ", ".join(f"{p} {100 * sum(h) / len(h):.0f} % ({len(h)})" for p, h in per_package.items())
    )
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
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as cache:
        tuning = run(TUNING, Path(cache), rng) if args.half != "held-out" else []
        # Its own generator: the held-out tasks are the same whichever halves run.
        held = run(HELD_OUT, Path(cache), random.Random(args.seed)) if args.half != "tuning" else []
        held_out = held
    summary = []
    if args.half != "held-out":
        summary.append(table("tuning", tuning))
    if args.half != "tuning":
        summary.append(table("held-out", held_out))
    out = ROOT / "bench" / "results" / f"context-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "tuning": tuning, "held_out": held_out}))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
