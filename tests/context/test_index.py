"""The repository index on real files: which files it reads, what it leaves out, how it
follows edits, saves and deletions, and that a restart reads only what changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aiguilleur.context.index import RepositoryIndex, store_dir


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root, "pkg/__init__.py", "")
    write(root, "pkg/models.py", "class User:\n    def rename(self, name: str) -> None: ...\n")
    write(root, "pkg/views.py", "from pkg.models import User\n\ndef show(u: User) -> str: ...\n")
    write(root, "build/generated.py", "def generated() -> None: ...\n")
    write(root, ".gitignore", "build/\n*.log\n")
    write(root, "notes.log", "not code\n")
    write(root, ".env", "API_KEY=abc\n")
    write(root, "secrets/keys.py", "def signing_key() -> str: ...\n")
    write(
        root,
        "pkg/settings.py",
        'TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"\nDEBUG = True\n',
    )
    write(root, "pkg/huge.py", "x = 1\n" * 300_000)
    write(root, "pkg/blob.py", b"\0\1\2binary")
    write(root, "pkg/broken.py", "def broken(:\n")
    return root


def index_of(root: Path, tmp_path: Path, **kw: object) -> RepositoryIndex:
    return RepositoryIndex(root, store_dir(tmp_path / "cache", root), **kw)  # type: ignore[arg-type]


def names(index: RepositoryIndex) -> set[str]:
    return {f"{f.path}:{d.name}" for f in index.files() for d in f.symbols.definitions}


def git_init(root: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)


@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
def test_it_reads_the_source_the_project_keeps_and_nothing_else(
    repo: Path, tmp_path: Path, git: bool
) -> None:
    if git:
        git_init(repo)
    index = index_of(repo, tmp_path)
    stats = index.refresh()
    paths = {f.path for f in index.files()}
    # Ignored (build/), private (secrets/**, .env), too big, binary: never read.
    assert paths == {
        "pkg/__init__.py",
        "pkg/models.py",
        "pkg/views.py",
        "pkg/settings.py",
        "pkg/broken.py",
    }
    assert stats.skipped == 2  # huge.py, blob.py
    assert {"pkg/models.py:User", "pkg/models.py:rename", "pkg/views.py:show"} <= names(index)
    # A definition shaped like a secret stays out; the rest of its file is kept.
    assert "pkg/settings.py:TOKEN" not in names(index)
    assert "pkg/settings.py:DEBUG" in names(index)
    # A syntax error does not stop the others.
    broken = index.get("pkg/broken.py")
    assert broken is not None and broken.symbols.error
    index.close()


def test_the_users_private_globs_are_left_out_too(repo: Path, tmp_path: Path) -> None:
    index = index_of(repo, tmp_path, private_globs=("pkg/views.py",))
    index.refresh()
    assert index.get("pkg/views.py") is None and index.get("pkg/models.py") is not None


def test_it_follows_an_edit_a_new_file_and_a_deleted_one(repo: Path, tmp_path: Path) -> None:
    index = index_of(repo, tmp_path)
    index.refresh()
    models = write(repo, "pkg/models.py", "class User:\n    def rename_to(self, new: str): ...\n")
    assert index.update(models)
    assert "pkg/models.py:rename_to" in names(index)
    assert "pkg/models.py:rename" not in names(index)
    added = write(repo, "pkg/orders.py", "def place(order_id: int) -> None: ...\n")
    assert index.update(added) and "pkg/orders.py:place" in names(index)
    added.unlink()
    assert index.update(added) and index.get("pkg/orders.py") is None
    # A full refresh finds the same, and a deleted file is forgotten by it too.
    (repo / "pkg/views.py").unlink()
    stats = index.refresh()
    assert index.get("pkg/views.py") is None and stats.parsed == 0
    assert not index.update(tmp_path / "elsewhere.py")  # outside the workspace
    index.close()


def test_a_restart_reads_only_what_changed(repo: Path, tmp_path: Path) -> None:
    first = index_of(repo, tmp_path)
    assert first.refresh().parsed == 5
    before = names(first)
    first.close()
    write(repo, "pkg/views.py", "def show(u, verbose: bool = False) -> str: ...\n")
    again = index_of(repo, tmp_path)
    assert names(again) == before  # from the store, before any refresh
    stats = again.refresh()
    assert stats.parsed == 1 and stats.files == 5
    again.close()


def test_a_corrupt_store_is_started_over(repo: Path, tmp_path: Path) -> None:
    first = index_of(repo, tmp_path)
    first.refresh()
    first.close()
    store = store_dir(tmp_path / "cache", repo)
    for db in store.glob("*.db"):
        db.write_bytes(b"not a database" * 100)
    again = index_of(repo, tmp_path)
    assert again.refresh().files == 5
    again.close()


def test_the_servers_parser_runs_in_a_process_of_its_own(repo: Path, tmp_path: Path) -> None:
    """Python's parser holds the GIL for as long as a file takes: the server's index
    parses in another process, with the same result as in this one."""
    from aiguilleur.context.index import ParserProcess, file_symbols

    parser = ParserProcess()
    try:
        text = (repo / "pkg/models.py").read_text()
        assert parser.symbols("pkg/models.py", text) == file_symbols("pkg/models.py", text)
        index = index_of(repo, tmp_path, parser=parser)
        index.refresh()
        assert "pkg/views.py:show" in names(index)
        index.close()
    finally:
        parser.close()
