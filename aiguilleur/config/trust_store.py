"""The workspace files the user trusted, each pinned to the SHA-256 of its content (as
`direnv allow` does): a file that changed is no longer trusted.

A small JSON file in the user's data dir (`trusted.json`), readable by the user. Writers
take a lock and replace the file atomically; readers never see half a file. An
unreadable or corrupt file trusts nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)


class TrustedFile(msgspec.Struct, frozen=True):
    path: str  # the workspace file, resolved
    sha256: str  # of its content when it was trusted
    trusted_at: float  # epoch seconds


class _Book(msgspec.Struct):
    version: int = 1
    files: dict[str, TrustedFile] = msgspec.field(default_factory=dict)


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class TrustStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> _Book:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_Book)
        except FileNotFoundError:
            return _Book()
        except (OSError, msgspec.DecodeError) as error:
            log.warning("trust.unreadable path=%s error=%s", self.path, error)
            return _Book()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Book]:
        """The book under an exclusive lock; written back atomically on success."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            book = self._read()
            yield book
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(msgspec.json.format(msgspec.json.encode(book)) + b"\n")
            os.replace(tmp, self.path)

    def lookup(self, file: Path) -> TrustedFile | None:
        return self._read().files.get(str(file.resolve()))

    def trust(self, file: Path, content: bytes) -> TrustedFile:
        """Trust `file` as long as its content is `content` (the bytes the user saw)."""
        entry = TrustedFile(str(file.resolve()), digest(content), time.time())
        with self._writing() as book:
            book.files[entry.path] = entry
        return entry

    def revoke(self, file: Path) -> bool:
        with self._writing() as book:
            return book.files.pop(str(file.resolve()), None) is not None

    def entries(self) -> list[TrustedFile]:
        return sorted(self._read().files.values(), key=lambda e: e.path)
