"""The repository block stays what it was while the cursor stays in one function: a
keystroke never makes the engine evaluate the prompt's head again."""

from __future__ import annotations

from pathlib import Path

from aiguilleur.context.block import RepositoryBlock
from aiguilleur.context.index import RepositoryIndex, store_dir

MODELS = """class User:
    def rename(self, new_name: str) -> None: ...


class Group:
    def add(self, user: User) -> None: ...
"""

VIEW = """from app.models import User, Group


def show(u: User):
    name = u.


def manage(g: Group):
    g.
"""


def _index(tmp_path: Path) -> RepositoryIndex:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "models.py").write_text(MODELS)
    (root / "app" / "views.py").write_text(VIEW)
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    return index


def test_the_block_is_kept_while_typing_in_one_function(tmp_path: Path) -> None:
    index = _index(tmp_path)
    block = RepositoryBlock()
    at = VIEW.index("u.") + 2
    first = block.chunks(index, "app/views.py", VIEW, at, 1024)
    assert first and "def rename" in first[0].text
    for typed in ("r", "re", "ren", "rename(", "rename('x')\n    "):
        text = VIEW[:at] + typed + VIEW[at:]
        assert block.chunks(index, "app/views.py", text, at + len(typed), 1024) is first
    assert block.rebuilds == 1


def test_it_is_rebuilt_in_another_function_on_an_import_or_a_save_keeping_its_head(
    tmp_path: Path,
) -> None:
    index = _index(tmp_path)
    block = RepositoryBlock()
    first = block.chunks(index, "app/views.py", VIEW, VIEW.index("u.") + 2, 1024)
    other = block.chunks(index, "app/views.py", VIEW, VIEW.index("g.") + 2, 1024)
    assert block.rebuilds == 2
    assert other[: len(first)] == first  # the old head kept first
    imported = "import os\n" + VIEW
    block.chunks(index, "app/views.py", imported, imported.index("g.") + 2, 1024)
    assert block.rebuilds == 3
    (index.root / "app" / "models.py").write_text(MODELS + "\n\ndef helper() -> None: ...\n")
    assert index.update(index.root / "app" / "models.py")
    block.chunks(index, "app/views.py", imported, imported.index("g.") + 2, 1024)
    assert block.rebuilds == 4
    assert block.chunks(index, "app/views.py", VIEW, 3, 0) == ()


STORE = """class Store:
    def fetch_everything(self, key: str) -> bytes: ...


def open_store() -> Store: ...
"""

REPORT = """from app.store import open_store


def show() -> None:
    pass
"""


def test_a_receiver_typed_after_the_block_was_built_gets_a_proposed_block(
    tmp_path: Path,
) -> None:
    """`s = open_store()` then `s.`: the block built when the cursor entered the
    function has open_store, not the Store it returns. The keystrokes keep that block;
    a block with Store, the old head first, is proposed, and is the block once adopted."""
    index = _index(tmp_path)
    (index.root / "app" / "store.py").write_text(STORE)
    assert index.update(index.root / "app" / "store.py")
    block = RepositoryBlock()
    path = "app/report.py"
    first = block.chunks(index, path, REPORT, REPORT.index("pass"), 1024)
    assert "def open_store" in first[0].text and "fetch_everything" not in first[0].text
    typed = REPORT.replace("pass", "s = open_store()\n    s.")
    at = typed.index("s.") + 2
    assert block.chunks(index, path, typed, at, 1024) is first
    proposed = block.propose(index, path, typed, at, 1024)
    assert proposed is not None and "fetch_everything" in "".join(c.text for c in proposed)
    assert proposed[: len(first)] == first  # what the engine holds stays the head
    assert block.chunks(index, path, typed + "f", at + 1, 1024) is first  # not yet
    assert not block.adopt(first)  # only the block proposed can be adopted
    assert block.adopt(proposed)
    assert block.chunks(index, path, typed + "f", at + 1, 1024) == proposed
    assert block.rebuilds == 1 and block.adopted == 1
    assert block.propose(index, path, typed + "f", at + 1, 1024) is None  # it has Store now


def test_nothing_is_proposed_for_a_receiver_the_block_shows_or_nobody_knows(
    tmp_path: Path,
) -> None:
    index = _index(tmp_path)
    block = RepositoryBlock()
    at = VIEW.index("u.") + 2
    block.chunks(index, "app/views.py", VIEW, at, 1024)
    assert block.propose(index, "app/views.py", VIEW, at, 1024) is None  # User is there
    unknown = VIEW.replace("name = u.", "name = mystery.")
    at = unknown.index("mystery.") + len("mystery.")
    assert block.propose(index, "app/views.py", unknown, at, 1024) is None
    # A cursor in another function: the next request rebuilds the block anyway.
    assert block.propose(index, "app/views.py", VIEW, VIEW.index("g.") + 2, 1024) is None
