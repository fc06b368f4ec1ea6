"""The repository index: for each source file of a workspace, what it defines and imports
(definitions.py), kept in memory for lookups in microseconds and on disk (diskcache,
bounded) so that a restart re-reads only the files that changed.

Which files: those git lists (tracked, and untracked but not ignored) when the workspace
is a git checkout, else a walk that honours the root's `.gitignore`; never a private file
(privacy.py's globs and the user's), nor one too big, binary or unreadable. A definition
whose text holds anything shaped like a secret is left out. Incremental: a refresh parses
again only files whose size or modification time changed, and whose content did.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import diskcache
import msgspec
import pathspec

from aiguilleur.context.definitions import Definition, DefinitionKind, FileSymbols, python_symbols
from aiguilleur.context.grammars import grammar_symbols, supported
from aiguilleur.context.lexical import LexicalStore, Window
from aiguilleur.context.privacy import find_secret, is_private
from aiguilleur.languages import language_of

log = logging.getLogger(__name__)

FORMAT = 3  # bump when IndexedFile changes: an older store is read as empty
MAX_FILE_BYTES = 1 << 20
MAX_FILES = 20_000
STORE_MB = 64
PARSE_TIMEOUT_S = 60.0
# Never worth a walk, whatever .gitignore says.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"}
)


MAX_NAMED = 4  # definitions of one name a lookup returns


class IndexedFile(msgspec.Struct, frozen=True):
    path: str  # relative to the root, with /
    size: int
    mtime_ns: int
    digest: str
    language: str
    symbols: FileSymbols


_ByName = dict[str, list[tuple[IndexedFile, Definition]]]
_Tables = tuple[_ByName, _ByName, dict[str, int], dict[str, tuple[str, ...]]]


class IndexStats(msgspec.Struct, frozen=True):
    root: str
    files: int
    definitions: int
    parsed: int  # files read and parsed by the last refresh (the others were unchanged)
    skipped: int  # files left out by the last refresh: private, too big, binary, unreadable
    seconds: float  # the last refresh
    updated: float  # when (epoch), 0 before the first


def store_dir(cache_dir: Path, root: Path) -> Path:
    """Where the index of the workspace `root` lives under the cache dir."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / "index" / digest


class Parser(Protocol):
    """Reads what a file defines: here (InProcess) or in a process of its own."""

    def symbols(self, path: str, text: str) -> FileSymbols: ...

    def close(self) -> None: ...


class InProcess:
    """For a command line: nothing else waits on this process."""

    def symbols(self, path: str, text: str) -> FileSymbols:
        return file_symbols(path, text)

    def close(self) -> None:
        pass


class ParserProcess:
    """Parsing in a process of its own, for the server: Python's parser holds the GIL for
    as long as one file takes (345 ms for numpy's largest, 411 KB), and a keystroke
    answered on the event loop must not wait for it. Started on first use (spawn: no
    fork of a process running llama.cpp's threads); a worker that dies is started again
    once per file, then the file is left without definitions."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
            return self._pool

    def symbols(self, path: str, text: str) -> FileSymbols:
        for _ in range(2):
            pool = self._executor()
            try:
                return pool.submit(file_symbols, path, text).result(timeout=PARSE_TIMEOUT_S)
            except (concurrent.futures.process.BrokenProcessPool, RuntimeError) as error:
                log.warning("index.parser_died path=%s error=%s", path, error)
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            except concurrent.futures.TimeoutError:
                return FileSymbols(error="took too long to parse")
        return FileSymbols(error="the parser process died")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def file_symbols(path: str, text: str) -> FileSymbols:
    """What `text`, the file at `path`, defines and imports, without the definitions shaped
    like secrets."""
    if path.endswith((".py", ".pyi")):
        symbols = python_symbols(text)
    elif supported(path):
        symbols = grammar_symbols(path, text)
    else:
        return FileSymbols()
    kept = tuple(d for d in symbols.definitions if find_secret(f"{d.signature}\n{d.doc}") is None)
    return msgspec.structs.replace(symbols, definitions=kept)


class RepositoryIndex:
    def __init__(
        self,
        root: Path,
        store: Path,
        *,
        private_globs: tuple[str, ...] = (),
        max_files: int = MAX_FILES,
        max_file_bytes: int = MAX_FILE_BYTES,
        store_mb: int = STORE_MB,
        parser: Parser | None = None,
    ) -> None:
        self.root = root.resolve()
        self.private_globs = private_globs
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self._store = _open_store(store, store_mb << 20)
        self._lexical = LexicalStore(store / "windows.sqlite" if self._store is not None else None)
        self._windowed = self._lexical.paths()  # a lost windows file is filled again
        self._parser: Parser = parser or InProcess()
        self._files: dict[str, IndexedFile] = {}
        self.generation = 0  # changes whenever a file's entry does: lookups keyed on it
        self._by_name: tuple[int, *_Tables] = (-1, {}, {}, {}, {})
        # A refresh runs in one thread while a save updates from another.
        self._lock = threading.RLock()
        self._stats = IndexStats(str(self.root), 0, 0, 0, 0, 0.0, 0.0)
        self._load()

    def _load(self) -> None:
        """What the store kept from an earlier run; whatever is unreadable is dropped."""
        if self._store is None:
            return
        decoder = msgspec.msgpack.Decoder(IndexedFile)
        try:
            if self._store.get("format") != FORMAT:
                self._store.clear()
                self._store.set("format", FORMAT)
                self._lexical.clear()
                self._windowed.clear()
                return
            for key in list(self._store.iterkeys()):
                if not isinstance(key, str) or not key.startswith("f:"):
                    continue
                raw = self._store.get(key)
                try:
                    entry = decoder.decode(raw) if isinstance(raw, bytes) else None
                except msgspec.DecodeError:
                    entry = None
                if entry is None:
                    self._store.delete(key)
                else:
                    self._files[entry.path] = entry
        except Exception as error:  # a corrupt store: start over, in memory first
            log.warning("index.store_unreadable root=%s error=%s", self.root, error)
            self._files.clear()
            self._store.clear()

    # -- which files --------------------------------------------------------------------

    def candidates(self) -> list[str]:
        """The workspace's files worth indexing, relative, at most max_files."""
        listed = self._git_files()
        if listed is None:
            listed = self._walk()
        out = []
        for rel in listed:
            if any(part in SKIPPED_DIRS for part in rel.split("/")[:-1]):
                continue
            if not language_of(rel) or is_private(rel, self.private_globs):
                continue
            out.append(rel)
            if len(out) >= self.max_files:
                log.info("index.capped root=%s files=%d", self.root, self.max_files)
                break
        return out

    def _git_files(self) -> list[str] | None:
        if not (self.root / ".git").exists():
            return None
        try:
            done = subprocess.run(
                ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=self.root,
                capture_output=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return sorted({p for p in done.stdout.decode("utf-8", "replace").split("\0") if p})

    def _walk(self) -> list[str]:
        ignore = self.root / ".gitignore"
        try:
            lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        out: list[str] = []
        for directory, dirs, files in os.walk(self.root):
            here = Path(directory).relative_to(self.root).as_posix()
            prefix = "" if here == "." else f"{here}/"
            dirs[:] = sorted(
                d for d in dirs if d not in SKIPPED_DIRS and not spec.match_file(f"{prefix}{d}/")
            )
            out += [f"{prefix}{f}" for f in sorted(files) if not spec.match_file(f"{prefix}{f}")]
            if len(out) > self.max_files * 4:
                break  # a tree of generated files: no need to list it all
        return out

    # -- keeping it up to date ----------------------------------------------------------

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> IndexStats:
        """Bring the index in line with the files on disk: parse what changed, forget what
        is gone. `progress(done, total)` is called as files are looked at."""
        with self._lock:
            return self._refresh(progress)

    def _refresh(self, progress: Callable[[int, int], None] | None) -> IndexStats:
        started = time.perf_counter()
        names = self.candidates()
        wanted = set(names)
        parsed = skipped = 0
        for i, rel in enumerate(names):
            outcome = self._index(rel)
            parsed += outcome == "parsed"
            skipped += outcome == "skipped"
            if progress is not None and (i % 50 == 0 or i == len(names) - 1):
                progress(i + 1, len(names))
        for rel in [r for r in self._files if r not in wanted]:
            self._forget(rel)
        self._stats = IndexStats(
            str(self.root),
            len(self._files),
            sum(len(f.symbols.definitions) for f in self._files.values()),
            parsed,
            skipped,
            time.perf_counter() - started,
            time.time(),
        )
        log.info(
            "index.refreshed root=%s files=%d parsed=%d skipped=%d s=%.2f",
            self.root,
            self._stats.files,
            parsed,
            skipped,
            self._stats.seconds,
        )
        return self._stats

    def relative(self, path: Path) -> str | None:
        """`path` relative to the root, with /; None outside the workspace. Resolved
        (symbolic links) only when it does not already start with the root."""
        for candidate in (path, path.resolve()):
            try:
                return candidate.relative_to(self.root).as_posix()
            except ValueError:
                continue
        return None

    def update(self, path: Path) -> bool:
        """One file saved, changed or deleted; whether the index changed."""
        rel = self.relative(path)
        if rel is None:
            return False  # not in this workspace
        with self._lock:
            if not path.exists():
                return self._forget(rel)
            if not language_of(rel) or is_private(rel, self.private_globs):
                return self._forget(rel)
            return self._index(rel) == "parsed"

    def _index(self, rel: str) -> str:
        """'same', 'parsed' or 'skipped' (and forgotten)."""
        path = self.root / rel
        try:
            st = path.stat()
        except OSError:
            self._forget(rel)
            return "skipped"
        old = self._files.get(rel)
        unchanged = old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if unchanged and rel in self._windowed:
            return "same"
        if st.st_size > self.max_file_bytes or not path.is_file():
            self._forget(rel)
            return "skipped"
        try:
            data = path.read_bytes()
        except OSError:
            self._forget(rel)
            return "skipped"
        if b"\0" in data[:8192]:
            self._forget(rel)
            return "skipped"
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        outcome = "parsed"
        text = data.decode("utf-8", errors="replace")
        if rel not in self._windowed or old is None or old.digest != digest:
            self._lexical.replace(rel, text)
            self._windowed.add(rel)
        if old is not None and old.digest == digest:  # touched, not changed
            entry = msgspec.structs.replace(old, size=st.st_size, mtime_ns=st.st_mtime_ns)
            outcome = "same"
        else:
            entry = IndexedFile(
                rel,
                st.st_size,
                st.st_mtime_ns,
                digest,
                language_of(rel),
                self._parser.symbols(rel, text),
            )
        self._files[rel] = entry
        self.generation += 1
        try:
            if self._store is not None:
                self._store.set(f"f:{rel}", msgspec.msgpack.encode(entry))
        except Exception as error:  # a full disk: the index still serves from memory
            log.warning("index.store_failed path=%s error=%s", rel, error)
        return outcome

    def _forget(self, rel: str) -> bool:
        if rel in self._windowed:
            self._lexical.forget(rel)
            self._windowed.discard(rel)
        if self._files.pop(rel, None) is None:
            return False
        self.generation += 1
        try:
            if self._store is not None:
                self._store.delete(f"f:{rel}")
        except Exception as error:
            log.warning("index.store_failed path=%s error=%s", rel, error)
        return True

    # -- reading ------------------------------------------------------------------------

    def classes(self) -> dict[str, list[tuple[IndexedFile, Definition]]]:
        """Every class of the workspace by its lowercased name, rebuilt after a change."""
        return self._tables()[0]

    def named(self, name: str) -> list[tuple[IndexedFile, Definition]]:
        """The workspace's top-level definitions called `name` (at most a few)."""
        return self._tables()[1].get(name, [])[:MAX_NAMED]

    def uses(self) -> dict[str, int]:
        """How many files of the workspace use each attribute name (`x.name`)."""
        return self._tables()[2]

    def packages(self) -> dict[str, tuple[str, ...]]:
        """For each package name, the directories that hold a package so named (its
        `__init__.py`), relative ("" for the root)."""
        return self._tables()[3]

    def _tables(self) -> _Tables:
        tables = self._by_name
        if tables[0] != self.generation:
            classes: dict[str, list[tuple[IndexedFile, Definition]]] = {}
            named: dict[str, list[tuple[IndexedFile, Definition]]] = {}
            uses: dict[str, int] = {}
            packages: dict[str, list[str]] = {}
            for f in list(self._files.values()):
                *parents, package, leaf = ["", *f.path.split("/")]
                if leaf == "__init__.py" and package:
                    packages.setdefault(package, []).append("/".join(parents).lstrip("/"))
                for d in f.symbols.definitions:
                    if d.kind is DefinitionKind.CLASS:
                        classes.setdefault(d.name.lower(), []).append((f, d))
                    if not d.scope:
                        named.setdefault(d.name, []).append((f, d))
                for name in f.symbols.uses:
                    uses[name] = uses.get(name, 0) + 1
            dirs = {name: tuple(found) for name, found in packages.items()}
            tables = self._by_name = (self.generation, classes, named, uses, dirs)
        return tables[1], tables[2], tables[3], tables[4]

    def get(self, rel: str) -> IndexedFile | None:
        return self._files.get(rel)

    def files(self) -> Iterator[IndexedFile]:
        return iter(list(self._files.values()))

    def stats(self) -> IndexStats:
        s = self._stats
        return msgspec.structs.replace(
            s,
            files=len(self._files),
            definitions=sum(len(f.symbols.definitions) for f in self._files.values()),
        )

    def similar(self, text: str, limit: int, exclude: str = "") -> list[Window]:
        """Windows of the workspace's files sharing the most words with `text` (the code
        at a cursor), best first, none of the file `exclude`."""
        return self._lexical.similar(text, limit, exclude)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            self._lexical.close()


def _open_store(directory: Path, size_bytes: int) -> diskcache.Cache | None:
    """The store, or a new one where the old is unreadable (moved aside); None when the
    disk refuses even that: the index then lives in memory only."""
    for attempt in range(2):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return diskcache.Cache(str(directory), size_limit=size_bytes)
        except (OSError, sqlite3.Error) as error:
            log.warning("index.store_unreadable dir=%s error=%s", directory, error)
            if attempt == 0:
                aside = directory.with_name(f"{directory.name}.broken-{int(time.time())}")
                try:
                    directory.rename(aside)
                    shutil.rmtree(aside, ignore_errors=True)
                except OSError:
                    return None
    return None
