"""The boundaries DESIGN.md draws, checked on the source: a module that crosses one fails
here, before it tangles the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aiguilleur"

# Below lsp/ nothing knows LSP: positions, encodings and protocol shapes stay at the edge.
LSP_MODULES = ("lsprotocol", "pygls", "aiguilleur.lsp")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def crossing(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        bad = [
            m for m in imports_of(path) if any(m == f or m.startswith(f"{f}.") for f in forbidden)
        ]
        if bad:
            out[str(path.relative_to(PACKAGE))] = sorted(bad)
    return out


def test_features_backends_and_caches_know_nothing_of_lsp() -> None:
    for folder in ("features", "context", "backends", "cache", "config", "remote"):
        assert crossing(folder, LSP_MODULES) == {}, folder


def test_backends_never_import_the_features_or_the_lsp_layer() -> None:
    assert crossing("backends", ("aiguilleur.features", "aiguilleur.lsp")) == {}
    assert crossing("cache", ("aiguilleur.features", "aiguilleur.backends")) == {}


# Each room may import the rooms listed here, and the modules at the package root (shapes,
# errors, the task helper, languages, log setup), which import nothing of the package. The
# table reads bottom-up as DESIGN.md's layout: a new arrow is a decision, made here.
ROOMS_BELOW: dict[str, set[str]] = {
    "cache": set(),
    "config": set(),
    "context": set(),
    "backends": {"cache", "context"},
    "features": {"config", "context"},
    "remote": {"backends", "config", "context"},
    "routing": {"backends", "cache", "config", "context", "remote"},
    "lsp": {"config", "context", "features", "remote", "routing"},
    "daemon": {"config", "lsp", "routing"},
    "commands": {
        "backends", "cache", "config", "context", "daemon", "features", "lsp", "remote", "routing"
    },
}  # fmt: skip
ROOT_MODULES = {
    "types",
    "errors",
    "tasks",
    "languages",
    "logs",
    "sanitize",
    "cli",
    "__main__",
    "__init__",
}


def room_of(module: str) -> str | None:
    """`aiguilleur.remote.spending` -> `remote`; None for a module at the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS_BELOW) else None


def module_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from aiguilleur.lsp import session`
    imports aiguilleur.lsp.session), those inside functions too."""
    paths = {
        ".".join(("aiguilleur", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m in paths and m != "aiguilleur"}
    return graph


def test_every_module_lives_in_a_room_or_is_one_of_the_few_at_the_root() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ROOT_MODULES)
    rooms = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert loose == []
    assert rooms == sorted(ROOMS_BELOW)


def test_each_room_imports_only_the_rooms_below_it() -> None:
    crossings = []
    for module, targets in module_graph().items():
        here = room_of(module)
        for target in targets:
            there = room_of(target)
            if module.split(".")[-1] in ("cli", "__main__") and here is None:
                continue  # the entry point dispatches to every room
            if here is None and there is not None:
                crossings.append(f"{module} (root) -> {target}")
            elif here is not None and there not in (None, here) and there not in ROOMS_BELOW[here]:
                crossings.append(f"{module} -> {target}")
    assert crossings == []


def test_no_import_circle() -> None:
    import graphlib

    graph = {m: {t for t in ts if t != m} for m, ts in module_graph().items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError with the circle


def test_the_check_sees_an_import_when_there_is_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from lsprotocol import types as lsp\nimport pygls.server\n")
    assert imports_of(module) == {"lsprotocol", "pygls.server"}


def test_the_shim_an_editor_starts_imports_nothing_heavy() -> None:
    """`aiguilleur serve` must answer fast: the shim (daemon/) loads neither the engine,
    nor pygls and lsprotocol (0.3 s), nor the LSP layer."""
    import subprocess
    import sys

    probe = (
        "import sys, aiguilleur.cli, aiguilleur.daemon.shim\n"
        "heavy = ('llama_cpp', 'numpy', 'pygls', 'lsprotocol', 'aiguilleur.backends', "
        "'aiguilleur.lsp', 'aiguilleur.routing', 'aiguilleur.remote')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
        "any(m.startswith(h) for h in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
