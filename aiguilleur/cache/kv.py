"""KV state store: snapshots of an engine's sequence state, keyed by the tokens they hold.

The store knows nothing of llama.cpp: an entry is a token prefix (int32) and an opaque
byte string, filed under a namespace that the engine derives from the model file and the
runtime that produced the bytes. Two tiers:

- RAM: an LRU bounded in bytes (counted exactly: the state bytes plus the token array),
  for the documents being edited;
- disk (kv_disk.py): a diskcache under the user cache dir, bounded in bytes with LRU
  eviction, for restarts; every state carries its namespace and a CRC-32, checked before
  anything is handed back.

Longest-prefix lookup without scanning every entry: each entry is indexed under a hash of
its first k*BLOCK tokens for every k; a lookup hashes the prompt at the same boundaries
and walks them from the longest down, so only entries sharing at least one block are
compared token by token.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np

from aiguilleur.cache.kv_disk import (
    DISK_ERRORS,
    STAT_KEYS,
    Corrupt,
    DiskSummary,
    KVDisk,
    clear_disk,
    summarize_disk,
)

__all__ = ["DiskSummary", "KVStateStore", "clear_disk", "summarize_disk"]

log = logging.getLogger(__name__)

BLOCK = 64
# A new state replaces a stored one when it holds all but at most this many of its
# tokens (what follows the cursor: the FIM suffix and generated tokens), and at least
# three quarters of them.
SUPERSEDE_SLACK = 256


class KVMatch(msgspec.Struct, frozen=True):
    entry: str
    matched: int  # tokens the entry shares with the looked-up sequence
    n_tokens: int  # tokens the entry holds
    tier: str  # "ram" or "disk"


class KVState(msgspec.Struct, frozen=True):
    tokens: list[int]
    data: bytes


class KVStoreStats(msgspec.Struct, frozen=True):
    ram_entries: int
    ram_bytes: int
    ram_limit: int
    disk_entries: int
    disk_bytes: int
    disk_limit: int
    hits_ram: int
    hits_disk: int
    misses: int
    stores: int
    discarded: int
    disk_problem: str | None = None
    disk_skipped: int = 0  # states kept in RAM only: the disk writer was too far behind
    disk_pending_bytes: int = 0  # states waiting in memory for the disk writer


class _Entry:
    __slots__ = ("data", "id", "on_disk", "size", "tokens")

    def __init__(self, entry: str, tokens: np.ndarray, size: int) -> None:
        self.id = entry
        self.tokens = tokens
        self.size = size
        self.data: bytes | None = None  # present while in the RAM tier
        self.on_disk = False


def _tokens(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(seq, dtype=np.int32))


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class KVStateStore:
    def __init__(
        self,
        namespace: str,
        directory: Path | None,
        ram_bytes: int,
        disk_bytes: int,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        if not namespace or "/" in namespace:
            raise ValueError(f"bad KV namespace {namespace!r}")
        self.namespace = namespace
        self.directory = directory
        self.ram_limit = ram_bytes
        self.disk_limit = disk_bytes
        self._on_problem = on_problem
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._blocks: dict[bytes, set[str]] = {}
        self._ram: OrderedDict[str, _Entry] = OrderedDict()
        self._ram_used = 0
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._disk_skipped = 0
        self._disk: KVDisk | None = None
        self.disk_problem: str | None = None
        if directory is not None and disk_bytes > 0:
            self._open_disk(directory)

    # -- disk tier set-up ---------------------------------------------------------------

    def _open_disk(self, directory: Path) -> None:
        try:
            self._disk = KVDisk(self.namespace, directory, self.disk_limit, self._disable_disk)
            metas, broken = self._disk.scan()
        except DISK_ERRORS as error:
            self._disable_disk(f"cannot open the KV cache in {directory}: {error}")
            return
        self._stats["discarded"] += broken
        for meta in metas:
            e = _Entry(meta.entry, np.frombuffer(meta.tokens, dtype=np.int32).copy(), meta.size)
            e.on_disk = True
            self._index(e)

    def _disable_disk(self, problem: str) -> None:
        with self._lock:
            if self.disk_problem is not None:
                return
            self.disk_problem = problem
            disk, self._disk = self._disk, None
        log.warning("kv.disk_disabled problem=%s", problem)
        if disk is not None:
            threading.Thread(target=disk.close, args=(1.0,), daemon=True).start()
        with self._lock:
            for e in list(self._entries.values()):
                e.on_disk = False
                if e.data is None:
                    self._unindex(e)
        if self._on_problem is not None:
            self._on_problem(f"{problem}. Keeping KV states in memory only until restart.")

    # -- index ----------------------------------------------------------------------------

    def _hashes(self, tokens: np.ndarray) -> list[bytes]:
        h = hashlib.blake2b(self.namespace.encode(), digest_size=16)
        out = []
        for k in range(len(tokens) // BLOCK):
            h.update(tokens[k * BLOCK : (k + 1) * BLOCK].tobytes())
            out.append(h.copy().digest())
        return out

    def _index(self, e: _Entry) -> None:
        self._entries[e.id] = e
        for digest in self._hashes(e.tokens):
            self._blocks.setdefault(digest, set()).add(e.id)

    def _unindex(self, e: _Entry) -> None:
        self._entries.pop(e.id, None)
        for digest in self._hashes(e.tokens):
            ids = self._blocks.get(digest)
            if ids is not None:
                ids.discard(e.id)
                if not ids:
                    del self._blocks[digest]

    def _entry_id(self, tokens: np.ndarray) -> str:
        h = hashlib.blake2b(self.namespace.encode(), digest_size=16)
        h.update(tokens.tobytes())
        return h.hexdigest()

    # -- public API -----------------------------------------------------------------------

    def lookup(self, tokens: Sequence[int] | np.ndarray) -> KVMatch | None:
        """The entry sharing the longest prefix with `tokens` (at least one block)."""
        arr = _tokens(tokens)
        hashes = self._hashes(arr)
        with self._lock:
            for digest in reversed(hashes):
                ids = self._blocks.get(digest)
                if not ids:
                    continue
                best: tuple[int, _Entry] | None = None
                for entry in ids:
                    e = self._entries[entry]
                    n = common_prefix(e.tokens, arr)
                    # Prefer RAM on ties: same tokens, no disk read.
                    if best is None or (n, e.data is not None) > (
                        best[0],
                        best[1].data is not None,
                    ):
                        best = (n, e)
                if best is not None:
                    n, e = best
                    return KVMatch(e.id, n, len(e.tokens), "ram" if e.data is not None else "disk")
        return None

    def covered(self, tokens: Sequence[int] | np.ndarray) -> int:
        """How many leading tokens of `tokens` some entry already holds."""
        match = self.lookup(tokens)
        return match.matched if match else 0

    def load(self, match: KVMatch) -> KVState | None:
        """The entry's state, verified; None (and the entry dropped) if it is gone or bad."""
        with self._lock:
            e = self._entries.get(match.entry)
            if e is None:
                self._count("misses")
                return None
            if e.data is not None:
                self._ram.move_to_end(e.id)
                self._count("hits_ram")
                return KVState(e.tokens.tolist(), e.data)
            disk = self._disk
        data = self._read_disk(e, disk) if disk is not None else None
        with self._lock:
            if data is None:
                self._count("misses")
                if e.data is None:
                    self._unindex(e)
                return None
            self._count("hits_disk")
            self._to_ram(e, data)
            return KVState(e.tokens.tolist(), data)

    def _read_disk(self, e: _Entry, disk: KVDisk) -> bytes | None:
        try:
            return disk.read(e.id, e.tokens.tobytes())
        except Corrupt:
            self._count("discarded")
            return None

    def put(self, tokens: Sequence[int] | np.ndarray, data: bytes) -> str | None:
        """Keep a state: in RAM now, on disk soon (a writer thread, off the caller's path)."""
        arr = _tokens(tokens)
        if len(arr) < BLOCK or not data:
            return None
        entry = self._entry_id(arr)
        with self._lock:
            e = self._entries.get(entry)
            if e is not None and e.size == len(data):
                if e.data is not None:
                    self._ram.move_to_end(entry)
                return entry
            if e is not None:
                self._drop(e)
            for old in self._superseded_by(arr):
                self._drop(old)
            e = _Entry(entry, arr, len(data))
            self._index(e)
            self._to_ram(e, data)
            self._count("stores")
            if self._disk is not None:
                # On disk from now on, as far as lookups care; unless the writer is too
                # far behind (a slow disk): then in RAM only.
                e.on_disk = self._disk.put(e.id, arr.tobytes(), data)
                if not e.on_disk:
                    self._disk_skipped += 1
            if not e.on_disk and e.data is None:  # too big for RAM, not on disk: nowhere
                self._unindex(e)
                return None
        return entry

    def _superseded_by(self, arr: np.ndarray) -> list[_Entry]:
        """Entries that `arr` holds nearly all of: the state of the same file a few
        keystrokes ago. Keeping them would fill the tiers with near-copies."""
        hashes = self._hashes(arr)
        out = []
        for digest in reversed(hashes):
            ids = self._blocks.get(digest)
            if not ids:
                continue
            for entry in list(ids):
                e = self._entries[entry]
                n = common_prefix(e.tokens, arr)
                if n >= len(e.tokens) - SUPERSEDE_SLACK and 4 * n >= 3 * len(e.tokens):
                    out.append(e)
            break
        return out

    def discard(self, entry: str) -> None:
        """The engine could not use this state: never offer it again."""
        with self._lock:
            e = self._entries.get(entry)
            if e is not None:
                self._count("discarded")
                self._drop(e)

    def stats(self) -> KVStoreStats:
        with self._lock:
            disk_entries = sum(1 for e in self._entries.values() if e.on_disk)
            disk_bytes = sum(e.size for e in self._entries.values() if e.on_disk)
            return KVStoreStats(
                ram_entries=len(self._ram),
                ram_bytes=self._ram_used,
                ram_limit=self.ram_limit,
                disk_entries=disk_entries,
                disk_bytes=disk_bytes,
                disk_limit=self.disk_limit if self._disk is not None else 0,
                disk_problem=self.disk_problem,
                disk_pending_bytes=self._disk.pending_bytes if self._disk is not None else 0,
                disk_skipped=self._disk_skipped,
                **self._stats,
            )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued disk writes are done (at shutdown)."""
        disk = self._disk
        return disk.flush(timeout) if disk is not None else True

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            disk, self._disk = self._disk, None
        if disk is not None:
            disk.close(timeout)

    # -- internals --------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self._stats[name] += 1
        if self._disk is not None:
            self._disk.incr(name)

    def _to_ram(self, e: _Entry, data: bytes) -> None:
        cost = len(data) + e.tokens.nbytes
        if cost > self.ram_limit:
            return
        if e.data is None:
            e.data = data
            self._ram[e.id] = e
            self._ram_used += cost
        self._ram.move_to_end(e.id)
        while self._ram_used > self.ram_limit:
            _, old = self._ram.popitem(last=False)
            self._ram_used -= len(old.data or b"") + old.tokens.nbytes
            old.data = None
            if not old.on_disk:
                self._unindex(old)

    def _drop(self, e: _Entry) -> None:
        if e.data is not None:
            self._ram.pop(e.id, None)
            self._ram_used -= len(e.data) + e.tokens.nbytes
            e.data = None
        if e.on_disk:
            if self._disk is not None:
                self._disk.delete(e.id)
            e.on_disk = False
        self._unindex(e)
