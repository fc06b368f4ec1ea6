"""The repository index's cost: `python3 dev.py bench index`.

For this checkout (a git tree) and a large package nobody here wrote (numpy's Python
sources as pip installed them: a walk, no git), side by side in one run: the first build
(an empty store), a refresh with nothing changed, a restart (a new index reading the
store, then a refresh), parsing the largest file again (what a save of it costs); files,
definitions, lines of Python, the store's size on disk and the memory the index takes
(RSS of this process, before and after). Then how late an event loop's 1 ms ticks come
while the large package is indexed in a thread, its files parsed in this process or in
one of their own (what a keystroke would wait in the server). Prints the tables and
writes bench/results/index-*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiguilleur.context.definitions import python_symbols  # noqa: E402
from aiguilleur.context.index import (  # noqa: E402
    InProcess,
    Parser,
    ParserProcess,
    RepositoryIndex,
    store_dir,
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


def python_lines(index: RepositoryIndex) -> int:
    total = 0
    for f in index.files():
        if f.path.endswith(".py"):
            total += (index.root / f.path).read_bytes().count(b"\n")
    return total


def measure(name: str, root: Path, cache: Path) -> dict[str, object]:
    store = store_dir(cache, root)
    before = rss_mb()
    t0 = time.perf_counter()
    index = RepositoryIndex(root, store)
    first = index.refresh()
    build_s = time.perf_counter() - t0
    after = rss_mb()
    t0 = time.perf_counter()
    unchanged = index.refresh()
    refresh_s = time.perf_counter() - t0
    # A save re-reads one file: the largest Python file is the worst case.
    biggest = max((f for f in index.files() if f.path.endswith(".py")), key=lambda f: f.size)
    text = (root / biggest.path).read_text(encoding="utf-8", errors="replace")
    t0 = time.perf_counter()
    python_symbols(text)
    save_ms = (time.perf_counter() - t0) * 1000
    index.close()
    t0 = time.perf_counter()
    again = RepositoryIndex(root, store)
    load_s = time.perf_counter() - t0
    restarted = again.refresh()
    restart_s = time.perf_counter() - t0
    lines = python_lines(again)
    again.close()
    return {
        "tree": name,
        "root": str(root),
        "files": first.files,
        "definitions": first.definitions,
        "python_lines": lines,
        "left_out": first.skipped,
        "build_s": build_s,
        "refresh_unchanged_s": refresh_s,
        "refresh_parsed": unchanged.parsed,
        "restart_load_s": load_s,
        "restart_total_s": restart_s,
        "restart_parsed": restarted.parsed,
        "largest_file_kb": biggest.size / 1024,
        "parse_largest_ms": save_ms,
        "store_mb": size_mb(store),
        "rss_growth_mb": after - before,
    }


def loop_stalls(root: Path, cache: Path, parser: Parser) -> dict[str, float]:
    """An event loop (as the server's) ticking every millisecond while the index of `root`
    is built in a thread: how late its ticks come (what a keystroke would wait)."""
    import asyncio

    async def run() -> list[float]:
        index = RepositoryIndex(root, cache / type(parser).__name__, parser=parser)
        building = asyncio.ensure_future(asyncio.to_thread(index.refresh))
        late: list[float] = []
        while not building.done():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - t0) * 1000 - 1)
        await building
        index.close()
        return late

    late = sorted(asyncio.run(run()))
    return {
        "ticks": len(late),
        "late_p50_ms": late[len(late) // 2],
        "late_p99_ms": late[int(len(late) * 0.99)],
        "late_max_ms": late[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tree", action="append", help="another tree to index (repeatable)")
    args = parser.parse_args()
    import numpy

    trees = [("aiguilleur (this checkout, git)", ROOT)]
    trees.append(("numpy (site-packages, walk)", Path(numpy.__file__).parent))
    trees += [(t, Path(t).resolve()) for t in args.tree or []]
    with tempfile.TemporaryDirectory() as cache:
        rows = [measure(name, root, Path(cache)) for name, root in trees]
        big = trees[1][1]
        process = ParserProcess()
        stalls = {
            "in this process": loop_stalls(big, Path(cache) / "stall", InProcess()),
            "in a process of its own": loop_stalls(big, Path(cache) / "stall", process),
        }
        process.close()
    keys = [
        ("files", "{:.0f}"),
        ("definitions", "{:.0f}"),
        ("python_lines", "{:.0f}"),
        ("left_out", "{:.0f}"),
        ("build_s", "{:.2f}"),
        ("refresh_unchanged_s", "{:.3f}"),
        ("restart_load_s", "{:.3f}"),
        ("restart_total_s", "{:.3f}"),
        ("restart_parsed", "{:.0f}"),
        ("largest_file_kb", "{:.0f}"),
        ("parse_largest_ms", "{:.1f}"),
        ("store_mb", "{:.1f}"),
        ("rss_growth_mb", "{:.1f}"),
    ]
    print(f"{'':24}" + "".join(f"{str(r['tree'])[:34]:>36}" for r in rows))
    for key, fmt in keys:
        print(f"{key:24}" + "".join(f"{fmt.format(r[key]):>36}" for r in rows))
    print(f"\nthe event loop while {trees[1][0]} is indexed, parsing:")
    for how, st in stalls.items():
        print(
            f"  {how:26} ticks {st['ticks']:6.0f}   late p50 {st['late_p50_ms']:6.2f} ms   "
            f"p99 {st['late_p99_ms']:7.2f} ms   max {st['late_max_ms']:7.2f} ms"
        )
    ratio = stalls["in this process"]["late_max_ms"] / max(
        0.01, stalls["in a process of its own"]["late_max_ms"]
    )
    print(f"  longest stall, in this process / in its own: {ratio:.1f}x")
    out = ROOT / "bench" / "results" / f"index-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"trees": rows, "loop_stalls": stalls}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
