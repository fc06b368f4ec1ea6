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
