"""Moving a `Llama`'s sequence state in and out of bytes, and naming what the bytes fit.

`llama_state_seq_get_data` copies only the KV cells of one sequence (about 12 KiB per
token for a 0.5B model). `Llama.save_state()` is avoided on purpose: it also copies the
scores array, n_batch x n_vocab floats (~300 MB for a 152k vocabulary).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aiguilleur.backends.counts import Count
from aiguilleur.backends.llama_native import context
from aiguilleur.cache.kv import KVStateStore

log = logging.getLogger(__name__)

_HEADER_BYTES = 1 << 20


def kv_namespace(model_path: Path, type_k: str = "f16", type_v: str = "f16") -> str:
    """Identity of the states a model produces here: the GGUF header (hashed), its size and
    mtime, the KV cache types, and the llama.cpp build that laid the bytes out."""
    import llama_cpp

    st = model_path.stat()
    h = hashlib.blake2b(digest_size=12)
    with model_path.open("rb") as f:
        h.update(f.read(_HEADER_BYTES))
    h.update(f"{st.st_size}:{st.st_mtime_ns}:{type_k}:{type_v}".encode())
    version = str(getattr(llama_cpp, "__version__", "unknown")).replace("/", "_")
    return f"{model_path.stem[:40].replace('/', '_')}.{h.hexdigest()}.llama-cpp-python-{version}"


def snapshot(llm: Any) -> tuple[np.ndarray, bytes]:
    """(tokens, state bytes) of sequence 0 as the context holds it now."""
    import llama_cpp

    ctx = context(llm)
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
    tokens = np.array(llm.input_ids[: llm.n_tokens], dtype=np.int32)
    return tokens, ctypes.string_at(buf, written)


def restore(llm: Any, tokens: list[int], data: bytes) -> bool:
    """Replace sequence 0 with a snapshot; False (and an empty context) if llama.cpp
    refuses it, e.g. when the bytes come from another build or do not fit the context."""
    import llama_cpp

    if len(tokens) >= llm.n_ctx():
        return False
    ctx = context(llm)
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
    llm.n_tokens = 0
    src = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8))
    read = llama_cpp.llama_state_seq_set_data(ctx, src, len(data), 0)
    if read != len(data):
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
        return False
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)
    return True


def live_common_prefix(llm: Any, tokens: list[int]) -> int:
    """How many leading `tokens` the context already holds."""
    n = min(llm.n_tokens, len(tokens))
    if n == 0:
        return 0
    diff = np.flatnonzero(llm.input_ids[:n] != np.asarray(tokens[:n], dtype=np.intc))
    return int(diff[0]) if diff.size else n


# A stored state is restored only if it saves evaluating at least this many tokens more
# than the live context does (a restore costs a few ms; a token, several on a laptop).
RESTORE_MIN_GAIN = 16
# The live state is saved before a request throws away this many of its tokens (the
# user moved to another file, or far away in this one) ...
LOSS_MIN = 256
# ... and on an idle pause, if at least this many of its tokens are in no stored state.
SAVE_MIN = 64


class StateKeeper:
    """When to restore a stored state into the context and when to save the live one.

    Saving costs a copy of the KV cells (milliseconds) and a disk write (on the store's
    writer thread), so it happens at boundaries, not per keystroke: when the user pauses,
    before a request discards most of the context, and at shutdown."""

    def __init__(self, store: KVStateStore | None, count: Callable[[Count, float], None]) -> None:
        self.store = store
        self._count = count
        # Leading live tokens that some stored state already holds.
        self.stored_upto = 0

    def reuse(self, llm: Any, tokens: list[int]) -> tuple[int, int]:
        """(leading `tokens` the context holds now, how many came from a stored state)."""
        n_live = live_common_prefix(llm, tokens)
        store = self.store
        if store is None:
            return n_live, 0
        match = store.lookup(tokens)
        log.debug(
            "kv.lookup tokens=%d live=%d match=%s tier=%s",
            len(tokens),
            n_live,
            match.matched if match else None,
            match.tier if match else None,
        )
        if match is None or match.matched < n_live + RESTORE_MIN_GAIN:
            self._save_before_losing(llm, n_live)
            return n_live, 0
        self._save_before_losing(llm, 0)
        state = store.load(match)
        if state is None:
            return n_live, 0
        t0 = time.perf_counter()
        if not restore(llm, state.tokens, state.data):
            log.warning("kv.restore_refused entry=%s", match.entry)
            store.discard(match.entry)
            self.stored_upto = 0
            return 0, 0
        self.stored_upto = len(state.tokens)
        self._count(Count.RESTORED, 1)
        self._count(Count.RESTORED_BYTES, len(state.data))
        self._count(Count.RESTORE_MS, (time.perf_counter() - t0) * 1000)
        n = live_common_prefix(llm, tokens)
        return n, n

    def truncated(self, n_tokens: int) -> None:
        self.stored_upto = min(self.stored_upto, n_tokens)

    def _save_before_losing(self, llm: Any, keep: int) -> None:
        if llm.n_tokens - keep >= LOSS_MIN:
            self.save_if_dirty(llm)

    def save_if_dirty(self, llm: Any, at_least: int = SAVE_MIN) -> None:
        """Save the live state if at least `at_least` of its tokens are in no stored
        state: a pause saves only what is worth a disk write; shutdown saves any gain, for
        the next start must not re-evaluate the line the user typed last."""
        store = self.store
        if store is None or llm is None or llm.n_tokens - self.stored_upto < max(1, at_least):
            return
        t0 = time.perf_counter()
        try:
            tokens, data = snapshot(llm)
            store.put(tokens, data)
        except Exception:  # a failed save only costs speed later, never a request
            log.exception("kv.save_failed")
            return
        self.stored_upto = llm.n_tokens
        self._count(Count.SAVED, 1)
        self._count(Count.SAVED_BYTES, len(data))
        self._count(Count.SAVED_TOKENS, len(tokens))
        self._count(Count.SAVE_MS, (time.perf_counter() - t0) * 1000)
        log.debug("kv.saved tokens=%d bytes=%d", len(tokens), len(data))
