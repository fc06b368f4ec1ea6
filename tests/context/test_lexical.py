"""Windows of the workspace's files found by the words they share with the code at the
cursor: the block's last part, where the definitions leave room."""

from __future__ import annotations

from pathlib import Path

from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.context.lexical import LexicalStore, windows
from aiguilleur.context.retrieval import SIMILAR, dependencies

RETRY = """def fetch_with_backoff(session, url):
    delay = 0.5
    for attempt in range(5):
        response = session.get(url, timeout=delay)
        if response.status_code != 503:
            return response
        delay = delay * 2
"""


def _index(tmp_path: Path, files: dict[str, str], private: tuple[str, ...] = ()) -> RepositoryIndex:
    root = tmp_path / "repo"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root), private_globs=private)
    index.refresh()
    return index


def test_windows_cover_the_file_and_leave_out_secrets() -> None:
    text = "\n".join(f"line_{i} = {i}" for i in range(45))
    found = windows("a.py", text)
    assert [w.line for w in found] == [0, 20, 40]
    assert found[1].text.startswith("line_20 = 20\n") and found[1].text.endswith("line_39 = 39\n")
    assert found[2].text == "".join(f"line_{i} = {i}\n" for i in range(40, 45))
    leaked = 'API_KEY = "sk-or-v1-' + "a" * 64 + '"\n'
    assert windows("b.py", leaked) == []


def test_the_window_sharing_the_rarest_words_comes_first(tmp_path: Path) -> None:
    index = _index(
        tmp_path,
        {
            "net/retry.py": RETRY,
            "net/plain.py": "def fetch(session, url):\n    return session.get(url)\n",
            "main.py": "",
        },
    )
    before = (
        "def download(session, url):\n    delay = 1\n"
        "    response = session.get(url, timeout=delay)\n    if response.status_code"
    )
    found = index.similar(before, 2, exclude="main.py")
    assert [w.path for w in found] == ["net/retry.py", "net/plain.py"]
    assert index.similar(before, 5, exclude="net/retry.py")[0].path != "net/retry.py"


def test_the_windows_follow_saves_deletions_and_private_files(tmp_path: Path) -> None:
    index = _index(tmp_path, {"a.py": RETRY, "secret/b.py": RETRY}, private=("secret/**",))
    assert {w.path for w in index.similar("fetch_with_backoff delay", 5)} == {"a.py"}
    (index.root / "a.py").write_text("def parse_manifest(blob):\n    return blob\n")
    index.update(index.root / "a.py")
    assert index.similar("fetch_with_backoff delay", 5) == []
    assert [w.path for w in index.similar("parse_manifest", 5)] == ["a.py"]
    (index.root / "a.py").unlink()
    index.update(index.root / "a.py")
    assert index.similar("parse_manifest", 5) == []


def test_a_lost_or_corrupt_windows_file_is_filled_again(tmp_path: Path) -> None:
    index = _index(tmp_path, {"a.py": RETRY})
    index.close()
    store = store_dir(tmp_path / "cache", tmp_path / "repo") / "windows.sqlite"
    for damage in (lambda: store.unlink(), lambda: store.write_bytes(b"not a database" * 100)):
        damage()
        again = RepositoryIndex(tmp_path / "repo", store.parent)
        again.refresh()  # the file is unchanged: only its windows are written again
        assert [w.path for w in again.similar("fetch_with_backoff", 5)] == ["a.py"]
        again.close()


def test_a_store_in_memory_serves_when_no_path_is_given() -> None:
    store = LexicalStore(None)
    store.replace("x.py", RETRY)
    assert [w.path for w in store.similar("status_code 503", 3)] == ["x.py"]
    # FTS5's own syntax in the code is read as words, never as a query that fails.
    assert store.similar("", 3) == [] and store.similar('"quoted" OR (NEAR', 3) == []
    assert [w.path for w in store.similar('delay" OR "(', 3)] == ["x.py"]


def test_the_completion_block_ends_with_windows_where_room_is_left(tmp_path: Path) -> None:
    """No import to follow: what the block can still tell is code elsewhere that does
    what the function being written does."""
    index = _index(tmp_path, {"net/retry.py": RETRY, "main.py": ""})
    text = (
        "def download(session, url):\n    delay = 1\n"
        "    response = session.get(url, timeout=delay)\n    "
    )
    chunks = dependencies(index, "main.py", text, len(text), 1024, similar=SIMILAR)
    assert [c.path for c in chunks] == ["net/retry.py"] and "status_code != 503" in chunks[0].text
    assert dependencies(index, "main.py", text, len(text), 1024) == ()
    assert dependencies(index, "main.py", text, len(text), 20, similar=SIMILAR) == ()  # no room
