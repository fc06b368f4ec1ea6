"""Where the tests of a source file go, following the project's layout when it shows one."""

from __future__ import annotations

from pathlib import Path

import msgspec


class TestTarget(msgspec.Struct, frozen=True):
    __test__ = False  # not a pytest class

    path: str  # the test file (may not exist yet)
    module: str  # how the test imports the code
    framework: str


def _tests_root(source: Path, root: Path | None) -> Path | None:
    """The nearest `tests`/`test` directory between the file and the workspace root."""
    here = source.parent
    while True:
        for name in ("tests", "test"):
            if (here / name).is_dir():
                return here / name
        if root is None or here == root or here.parent == here:
            return None
        if not here.is_relative_to(root):
            return None
        here = here.parent


def _framework(source: Path, root: Path | None) -> str:
    ext = source.suffix
    if ext == ".py":
        return "pytest"
    if ext == ".go":
        return "Go's testing package"
    if ext in (".js", ".ts", ".jsx", ".tsx", ".mjs"):
        pkg = (root / "package.json") if root else None
        text = pkg.read_text(encoding="utf-8", errors="replace") if pkg and pkg.is_file() else ""
        return "vitest" if "vitest" in text else "jest" if "jest" in text else "node:test"
    if ext == ".rs":
        return "Rust's built-in #[test]"
    return "the project's usual test framework"


def test_target(source_path: str, root: Path | None) -> TestTarget:
    source = Path(source_path)
    ext, stem = source.suffix, source.stem
    framework = _framework(source, root)
    if ext == ".go":
        return TestTarget(str(source.with_name(f"{stem}_test.go")), stem, framework)
    if ext in (".js", ".ts", ".jsx", ".tsx", ".mjs"):
        return TestTarget(str(source.with_name(f"{stem}.test{ext}")), f"./{stem}", framework)
    module = stem
    if ext == ".py" and root is not None and source.is_relative_to(root):
        rel = source.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "src"] if rel.parts[0] == "src" else list(rel.parts)
        module = ".".join(parts)
    tests = _tests_root(source, root)
    if tests is not None and ext == ".py":
        # Mirror the package under tests/ when the project already does.
        package = source.parent.name
        mirrored = tests / package
        target_dir = mirrored if mirrored.is_dir() else tests
        return TestTarget(str(target_dir / f"test_{stem}{ext}"), module, framework)
    return TestTarget(str(source.with_name(f"test_{stem}{ext}")), module, framework)
