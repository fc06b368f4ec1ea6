"""Response cache: answers of remote models, on disk, for requests that would get the
same answer again (temperature 0, or the user's explicit opt-in).

Keyed by a hash of everything that decides the answer: backend, server, model, the full
prompt and the generation parameters. Bounded in size (LRU) and in age (TTL). A broken
cache directory turns the cache off; it never fails a request.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)


class CachedAnswer(msgspec.Struct, frozen=True):
    text: str
    model_used: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # what it cost when it was paid for


def cache_key(**parts: Any) -> str:
    """A stable digest of the request's parts (JSON with sorted keys)."""
    blob = msgspec.json.encode({k: parts[k] for k in sorted(parts)})
    return hashlib.blake2b(blob, digest_size=20).hexdigest()


class ResponseCache:
    def __init__(self, directory: Path, size_bytes: int, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._disk: Any = None
        self.hits = 0
        self.misses = 0
        try:
            import diskcache

            directory.mkdir(parents=True, exist_ok=True)
            self._disk = diskcache.Cache(
                str(directory), size_limit=size_bytes, eviction_policy="least-recently-used"
            )
        except (OSError, sqlite3.Error) as error:
            log.warning("responses.disabled dir=%s error=%s", directory, error)

    def get(self, key: str) -> CachedAnswer | None:
        if self._disk is None:
            return None
        try:
            raw = self._disk.get(key)
            answer = msgspec.msgpack.decode(raw, type=CachedAnswer) if raw is not None else None
        except (OSError, sqlite3.Error, msgspec.DecodeError, TypeError) as error:
            log.warning("responses.read_failed error=%s", error)
            answer = None
        if answer is None:
            self.misses += 1
        else:
            self.hits += 1
        return answer

    def put(self, key: str, answer: CachedAnswer) -> None:
        if self._disk is None:
            return
        try:
            self._disk.set(key, msgspec.msgpack.encode(answer), expire=self.ttl_s)
        except (OSError, sqlite3.Error) as error:
            log.warning("responses.write_failed error=%s", error)

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
