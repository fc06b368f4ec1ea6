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
    for folder in ("features", "backends", "cache"):
        assert crossing(folder, LSP_MODULES) == {}, folder


def test_backends_never_import_the_features_or_the_lsp_layer() -> None:
    assert crossing("backends", ("aiguilleur.features", "aiguilleur.lsp")) == {}
    assert crossing("cache", ("aiguilleur.features", "aiguilleur.backends")) == {}


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
        "'aiguilleur.lsp', 'aiguilleur.runtime')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
        "any(m.startswith(h) for h in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
