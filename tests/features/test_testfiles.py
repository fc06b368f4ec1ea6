"""Where generated tests go: the project's layout when it has one."""

from __future__ import annotations

from pathlib import Path

from aiguilleur.features.testfiles import test_target as target_of


def test_a_tests_directory_is_used_and_mirrored_when_the_project_mirrors(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "tests").mkdir()
    flat = target_of(str(tmp_path / "pkg" / "calc.py"), tmp_path)
    assert flat.path == str(tmp_path / "tests" / "test_calc.py")
    assert flat.module == "pkg.calc" and flat.framework == "pytest"
    (tmp_path / "tests" / "pkg").mkdir()
    mirrored = target_of(str(tmp_path / "pkg" / "calc.py"), tmp_path)
    assert mirrored.path == str(tmp_path / "tests" / "pkg" / "test_calc.py")


def test_src_layouts_import_without_src(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    assert target_of(str(tmp_path / "src" / "pkg" / "calc.py"), tmp_path).module == "pkg.calc"


def test_without_a_tests_directory_tests_go_next_to_the_code(tmp_path: Path) -> None:
    assert target_of(str(tmp_path / "calc.py"), tmp_path).path == str(tmp_path / "test_calc.py")


def test_other_languages_follow_their_conventions(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"devDependencies": {"vitest": "^1"}}')
    ts = target_of(str(tmp_path / "sum.ts"), tmp_path)
    assert ts.path == str(tmp_path / "sum.test.ts") and ts.framework == "vitest"
    go = target_of(str(tmp_path / "sum.go"), tmp_path)
    assert go.path == str(tmp_path / "sum_test.go")
