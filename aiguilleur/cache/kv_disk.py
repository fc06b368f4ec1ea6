"""The disk tier of the KV state store: a diskcache under the user cache dir.

Two keys per state, under `<namespace>/`: `data/<id>` (the state bytes, a file of its
own) and `meta/<id>` (tokens, size, CRC-32), small enough to read all of them at start.
diskcache writes a value's file before committing its row, so a process killed mid-write
leaves no visible entry; the state is written before its metadata, so a visible entry
always has its bytes. Writes run on one thread, off the engine's path; the first failure
(full disk, unwritable dir) disables the tier and is reported once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

_FORMAT = 1
STAT_KEYS = ("hits_ram", "hits_disk", "misses", "stores", "discarded")
DISK_ERRORS = (OSError, sqlite3.Error)


class DiskMeta(msgspec.Struct, frozen=True):
    format: int
    namespace: str
    entry: str
    tokens: bytes  # int32, native order
    size: int
    crc: int
    created: float


class Corrupt(Exception):
    """A stored state failed its checks: dropped, never handed out."""


def open_disk(directory: Path, size_limit: int) -> Any:
    """The diskcache; a database that is not one any more is moved aside, not trusted."""
    import diskcache

    directory.mkdir(parents=True, exist_ok=True)
    settings = {
        "size_limit": size_limit,
        "eviction_policy": "least-recently-used",
        "cull_limit": 10,
        "statistics": False,
    }
    try:
        return diskcache.Cache(str(directory), **settings)
    except sqlite3.DatabaseError as error:
        if isinstance(error, sqlite3.OperationalError):
            raise  # locked or unwritable: not ours to move
        aside = directory.with_name(f"{directory.name}.broken-{int(time.time())}")
        log.warning("kv.corrupt_db dir=%s moved_to=%s error=%s", directory, aside, error)
        directory.rename(aside)
        directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(str(directory), **settings)


def decode_meta(raw: object, namespace: str | None = None) -> DiskMeta | None:
    if not isinstance(raw, bytes):
        return None
    try:
        meta = msgspec.msgpack.decode(raw, type=DiskMeta)
    except msgspec.DecodeError:
        return None
    if meta.format != _FORMAT or (namespace is not None and meta.namespace != namespace):
        return None
    return meta


# The most bytes of states waiting in memory for the writer: beyond, a state stays in RAM
# only (a slow disk then costs speed after a restart, never memory).
MAX_PENDING_BYTES = 256 << 20


class KVDisk:
    """One namespace's view of the disk tier. Opening it raises DISK_ERRORS."""

    def __init__(
        self, namespace: str, directory: Path, size_limit: int, on_failure: Callable[[str], None]
    ) -> None:
        self.namespace = namespace
        self.directory = directory
        self._prefix = f"{namespace}/"
        self._on_failure = on_failure
        self._cache: Any = open_disk(directory, size_limit)
        self._writes: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._pending_lock = threading.Lock()
        self.pending_bytes = 0  # of the states queued for the writer
        self._writer = threading.Thread(target=self._write_loop, name="kv-writer", daemon=True)
        self._writer.start()

    def scan(self) -> tuple[list[DiskMeta], int]:
        """This namespace's entries, and how many broken ones were dropped (orphaned
        states are deleted too). Other namespaces are left alone: LRU retires them."""
        metas: set[str] = set()
        datas: set[str] = set()
        for key in list(self._cache.iterkeys()):
            if not isinstance(key, str) or not key.startswith(self._prefix):
                continue
            kind, _, entry = key[len(self._prefix) :].partition("/")
            (metas if kind == "meta" else datas).add(entry)
        found: list[DiskMeta] = []
        broken = 0
        for entry in metas:
            meta = decode_meta(self._cache.get(self._key("meta", entry)), self.namespace)
            if meta is None or meta.entry != entry or entry not in datas:
                self._delete(entry)
                broken += 1
            else:
                found.append(meta)
        for entry in datas - metas:
            self._cache.delete(self._key("data", entry))
        return found, broken

    def read(self, entry: str, tokens: bytes) -> bytes | None:
        """The state's bytes; None if LRU evicted it; Corrupt if it fails a check."""
        try:
            meta = decode_meta(self._cache.get(self._key("meta", entry)), self.namespace)
            data = self._cache.get(self._key("data", entry))
        except DISK_ERRORS as error:
            log.warning("kv.read_failed entry=%s error=%s", entry, error)
            return None
        if data is None:
            return None
        if not (
            meta is not None
            and isinstance(data, bytes)
            and len(data) == meta.size
            and zlib.crc32(data) == meta.crc
            and meta.tokens == tokens
        ):
            log.warning("kv.discarded entry=%s reason=checksum", entry)
            self.delete(entry)
            raise Corrupt(entry)
        return data

    def put(self, entry: str, tokens: bytes, data: bytes) -> bool:
        """Queue the state for the writer; False when too many bytes wait already."""
        with self._pending_lock:
            if self.pending_bytes + len(data) > MAX_PENDING_BYTES:
                return False
            self.pending_bytes += len(data)
        self._writes.put(("put", (entry, tokens, data)))
        return True

    def delete(self, entry: str) -> None:
        self._writes.put(("delete", entry))

    def incr(self, counter: str) -> None:
        self._writes.put(("incr", counter))

    def flush(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._writes.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._writes.unfinished_tasks

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._writes.put(None)
        self._writer.join(timeout)
        with contextlib.suppress(*DISK_ERRORS):  # already broken: nothing left to lose
            self._cache.close()

    def _key(self, kind: str, entry: str) -> str:
        return f"{self._prefix}{kind}/{entry}"

    def _delete(self, entry: str) -> None:
        self._cache.delete(self._key("data", entry))
        self._cache.delete(self._key("meta", entry))

    def _write_loop(self) -> None:
        failed = False
        while True:
            item = self._writes.get()
            try:
                if item is None:
                    return
                if failed:
                    continue
                op, arg = item
                try:
                    self._write(op, arg)
                except DISK_ERRORS as error:
                    failed = True
                    self._on_failure(f"cannot write the KV cache in {self.directory}: {error}")
            finally:
                if item is not None and item[0] == "put":
                    with self._pending_lock:
                        self.pending_bytes -= len(item[1][2])
                self._writes.task_done()

    def _write(self, op: str, arg: Any) -> None:
        if op == "put":
            entry, tokens, data = arg
            meta = DiskMeta(
                _FORMAT, self.namespace, entry, tokens, len(data), zlib.crc32(data), time.time()
            )
            # State first, then the metadata that makes it visible at start.
            self._cache.set(self._key("data", entry), data)
            self._cache.set(self._key("meta", entry), msgspec.msgpack.encode(meta))
        elif op == "delete":
            self._delete(arg)
        elif op == "incr":
            self._cache.incr(f"stats/{arg}", default=0)


class DiskSummary(msgspec.Struct, frozen=True):
    namespace: str
    entries: int
    bytes: int
    tokens: int


def summarize_disk(directory: Path) -> tuple[list[DiskSummary], dict[str, int], int]:
    """Per-namespace entries and sizes, the persisted hit counters, total bytes on disk."""
    import diskcache

    if not (directory / "cache.db").exists():
        return [], dict.fromkeys(STAT_KEYS, 0), 0
    with diskcache.Cache(str(directory)) as disk:
        per: dict[str, list[int]] = {}
        counters = dict.fromkeys(STAT_KEYS, 0)
        for key in disk.iterkeys():
            if not isinstance(key, str):
                continue
            if key.startswith("stats/"):
                value = disk.get(key)
                counters[key[len("stats/") :]] = int(value) if isinstance(value, int) else 0
                continue
            namespace, _, rest = key.partition("/")
            meta = decode_meta(disk.get(key)) if rest.startswith("meta/") else None
            if meta is None:
                continue
            row = per.setdefault(namespace, [0, 0, 0])
            row[0] += 1
            row[1] += meta.size
            row[2] += len(meta.tokens) // 4
        volume = int(disk.volume())
    summaries = [DiskSummary(ns, *row) for ns, row in sorted(per.items())]
    return summaries, counters, volume


def clear_disk(directory: Path) -> int:
    """Remove every state of every model; returns the entries removed."""
    import diskcache

    if not (directory / "cache.db").exists():
        return 0
    with diskcache.Cache(str(directory)) as disk:
        n = sum(1 for k in disk.iterkeys() if isinstance(k, str) and "/meta/" in k)
        disk.clear()
    return n
