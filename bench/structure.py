"""The package's structure, measured from its own imports: modules and lines per package,
the import arrows between packages, import circles, the largest files.

    python3 dev.py bench structure                  # this checkout
    python3 dev.py bench structure --rev 9f65489    # a past commit (read with git show)

Prints a table and writes bench/results/structure-*.json. Every import counts, those
inside functions too: a deferred import still ties the two modules together.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "aiguilleur"


def sources(rev: str | None) -> dict[str, str]:
    """Module name -> source, from the working tree or from commit `rev`."""
    if rev is None or rev == ".":
        files = sorted((ROOT / PACKAGE).rglob("*.py"))
        return {_module(str(p.relative_to(ROOT))): p.read_text(encoding="utf-8") for p in files}
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, PACKAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        _module(path): subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for path in listing
        if path.endswith(".py")
    }


def _module(path: str) -> str:
    name = path.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def package_of(module: str, packages: set[str]) -> str:
    """`aiguilleur.remote.spending` -> `remote`; the modules at the root share one room."""
    parts = module.split(".")
    if module in (f"{PACKAGE}.cli", f"{PACKAGE}.__main__"):
        return "(cli)"  # the entry imports every room: counted apart, not as the root's
    if len(parts) >= 2 and ".".join(parts[:2]) in packages:
        return parts[1]
    return "(root)" if len(parts) == 2 else parts[1]


def imports(source: str, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from aiguilleur.lsp import session` imports a module, not a name.
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != PACKAGE:
                found.add(name)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def measure(rev: str | None) -> dict[str, object]:
    src = sources(rev)
    modules = set(src)
    packages = {m for m in modules if any(o.startswith(f"{m}.") for o in modules)}
    lines = {m: s.count("\n") for m, s in src.items()}
    graph = {m: imports(s, modules) - {m} for m, s in src.items()}
    rooms: dict[str, list[str]] = defaultdict(list)
    for m in modules:
        if m != PACKAGE:
            rooms[package_of(m, packages)].append(m)
    arrows: dict[str, int] = defaultdict(int)
    room_graph: dict[str, set[str]] = defaultdict(set)
    for m, targets in graph.items():
        if m == PACKAGE:
            continue
        a = package_of(m, packages)
        for t in targets:
            b = package_of(t, packages)
            if a != b:
                arrows[f"{a} -> {b}"] += 1
                room_graph[a].add(b)
    largest = sorted(((lines[m], m) for m in modules), reverse=True)[:8]
    return {
        "rev": rev if rev not in (None, ".") else "working tree",
        "modules": len(modules),
        "lines": sum(lines.values()),
        "rooms": {
            r: {"modules": len(ms), "lines": sum(lines[m] for m in ms)}
            for r, ms in sorted(rooms.items())
        },
        "arrows_between_rooms": dict(sorted(arrows.items())),
        "module_circles": circles(graph),
        "room_circles": circles(dict(room_graph)),
        "largest": [{"module": m, "lines": n} for n, m in largest],
    }


def render(s: dict[str, object]) -> str:
    rooms = s["rooms"]
    assert isinstance(rooms, dict)
    out = [f"## {s['rev']}: {s['modules']} modules, {s['lines']} lines", ""]
    out += ["| room | modules | lines |", "|---|---|---|"]
    out += [f"| {r} | {v['modules']} | {v['lines']} |" for r, v in rooms.items()]
    arrows = s["arrows_between_rooms"]
    assert isinstance(arrows, dict)
    out += ["", f"import arrows between rooms: {len(arrows)} pairs, {sum(arrows.values())} imports"]
    mc, rc = s["module_circles"], s["room_circles"]
    assert isinstance(mc, list) and isinstance(rc, list)
    out += [f"module circles: {len(mc)} {mc}", f"room circles: {len(rc)} {rc}"]
    largest = s["largest"]
    assert isinstance(largest, list)
    out += ["largest: " + ", ".join(f"{x['module']} {x['lines']}" for x in largest)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--rev", action="append", help="a commit, or . for the working tree (repeat to compare)"
    )
    args = parser.parse_args()
    results = [measure(rev) for rev in (args.rev or [None])]
    for r in results:
        print(render(r), end="\n\n")
    out = ROOT / "bench" / "results" / f"structure-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
