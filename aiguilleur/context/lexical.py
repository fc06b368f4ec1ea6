"""The workspace's files cut in windows of lines, searchable by the words they share with
the code at the cursor (BM25, SQLite's FTS5): the "lexically similar chunks" of the
repository block, after the definitions, where they leave room (code elsewhere that does
what the cursor's function does: the same calls, the same names).

Stored beside the index's definitions (a file of its own, so that a broken one costs
only the search), in memory when the disk refuses. A window shaped like a secret is
never stored; neither is anything of a file the index does not read (private, too big,
binary).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from pathlib import Path

import msgspec

from aiguilleur.context.privacy import find_secret

log = logging.getLogger(__name__)

# RepoCoder's windows are 20 lines, a new one every 10; side by side rather than
# overlapping, they cost half the store and half the time to index (numpy: 12.8 MB and
# 0.44 s against 21.4 MB and 0.73 s).
WINDOW_LINES = 20
STRIDE_LINES = 20
MAX_WINDOWS_PER_FILE = 200
MAX_WINDOWS = 60_000  # about 60 MB of text at most, per workspace
# A search's cost grows with its words (numpy's windows: 10 ms p50 for 40 words, 4 ms
# for 8): the nearest to the cursor say the most.
MAX_QUERY_WORDS = 12
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
# Words every file has: they say nothing of what a window is about.
_COMMON = frozenset(
    {
        *("self", "cls", "def", "class", "return", "import", "from", "None", "True", "False"),
        *("for", "while", "not", "and", "with", "else", "elif", "try", "except", "pass"),
        *("const", "let", "var", "function", "this", "func", "struct", "impl", "pub", "fn"),
    }
)


class Window(msgspec.Struct, frozen=True):
    """Lines `line` (0-based) onwards of the file `path`, relative to the root."""

    path: str
    line: int
    text: str


def windows(path: str, text: str) -> list[Window]:
    """`text` cut in windows of lines, without those that say nothing (blank) or hold
    anything shaped like a secret."""
    lines = text.split("\n")
    out: list[Window] = []
    for start in range(0, len(lines), STRIDE_LINES):
        body = "\n".join(lines[start : start + WINDOW_LINES]).strip("\n")
        if body.strip() and find_secret(body) is None:
            out.append(Window(path, start, body + "\n"))
        if len(out) >= MAX_WINDOWS_PER_FILE:
            break
    return out


def query_words(text: str) -> list[str]:
    """The words of `text` a search uses: identifiers of 4 characters or more, each once,
    the last ones (nearest the cursor) first."""
    seen: dict[str, None] = {}
    for word in reversed(_WORD.findall(text)):
        if word not in _COMMON:
            seen.setdefault(word, None)
        if len(seen) >= MAX_QUERY_WORDS:
            break
    return list(seen)


class LexicalStore:
    """The windows of a workspace's files. Thread-safe: the index is refreshed from a
    worker thread while requests search from the event loop."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._db = _open(path)
        self._count = self._db.execute("SELECT count(*) FROM windows").fetchone()[0]

    def paths(self) -> set[str]:
        """The files whose windows are stored."""
        with self._lock:
            return {str(p) for (p,) in self._db.execute("SELECT DISTINCT path FROM windows")}

    def replace(self, path: str, text: str) -> None:
        """The windows of the file `path`, now holding `text`."""
        rows = [(w.text, w.path, w.line) for w in windows(path, text)]
        self._write(path, rows)

    def forget(self, path: str) -> None:
        self._write(path, [])

    def clear(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM windows")
                self._count = 0
            except sqlite3.Error as error:
                log.warning("lexical.store_failed error=%s", error)

    def _write(self, path: str, rows: list[tuple[str, str, int]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                gone = self._db.execute("DELETE FROM windows WHERE path = ?", (path,)).rowcount
                if self._count - gone + len(rows) > MAX_WINDOWS:
                    log.info("lexical.capped path=%s windows=%d", path, self._count)
                    rows = []  # bounded: a file past the cap goes without windows
                self._db.executemany("INSERT INTO windows VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
                self._count += len(rows) - max(0, gone)
            except sqlite3.Error as error:  # a full disk: the search goes without this file
                log.warning("lexical.store_failed path=%s error=%s", path, error)
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")

    def similar(self, text: str, limit: int, exclude: str = "") -> list[Window]:
        """The windows sharing the most (rare) words with `text`, best first, none of the
        file `exclude`."""
        words = query_words(text)
        if not words or limit <= 0:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT path, line, body FROM windows WHERE windows MATCH ? AND path != ? "
                    "ORDER BY bm25(windows) LIMIT ?",
                    (match, exclude, limit),
                ).fetchall()
            except sqlite3.Error as error:
                log.warning("lexical.search_failed error=%s", error)
                return []
        return [Window(str(p), int(line), str(body)) for p, line, body in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _open(path: Path | None) -> sqlite3.Connection:
    """The store at `path`, made anew when it is unreadable; in memory when even that
    fails, or without a path."""
    if path is not None:
        for attempt in range(2):
            try:
                return _connect(str(path))
            except sqlite3.Error as error:  # corrupt: start over
                log.warning("lexical.store_unreadable path=%s error=%s", path, error)
                if attempt == 0:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return _connect(":memory:")


def _connect(where: str) -> sqlite3.Connection:
    db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
    try:
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS windows USING fts5("
            "body, path UNINDEXED, line UNINDEXED)"
        )
        db.execute("SELECT count(*) FROM windows").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db
