"""Loading a GGUF with llama-cpp-python and the few low-level calls the engine makes on it."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.backends import llama_native as native
from aiguilleur.backends.fim import resolve_fim_tokens
from aiguilleur.errors import BackendUnavailable
from aiguilleur.types import FimTokens, ModelInfo

log = logging.getLogger(__name__)


class EngineSettings(msgspec.Struct, frozen=True):
    n_ctx: int = 4096
    n_batch: int = 128
    n_threads: int | None = None  # None: every core this process may run on
    # Off only for the bench's "fresh prompt per request" baseline.
    reuse_prefix: bool = True
    speculative: bool = False  # drafts from the context (speculative.py), greedy only


def load_model(path: Path, settings: EngineSettings) -> tuple[Any, FimTokens | None, ModelInfo]:
    """(Llama, FIM tokens or None, info). Raises on a missing or unloadable file."""
    if not path.is_file():
        raise BackendUnavailable(f"model file not found: {path}")
    import llama_cpp
    from llama_cpp import Llama

    start = time.perf_counter()
    threads = settings.n_threads or usable_cores()
    with _safe_model_params():
        llm = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    vocab = native.vocab(llm)
    gguf_ids = [
        getattr(llama_cpp, f"llama_vocab_fim_{k}")(vocab)
        for k in ("pre", "suf", "mid", "pad", "rep", "sep")
    ]
    bos = llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else -1
    ends = [llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)]
    fim = resolve_fim_tokens(gguf_ids, bos, ends, lambda text: single_token(llm, text))
    name = llm.metadata.get("general.name", path.stem)
    info = ModelInfo(
        path=str(path),
        name=str(name),
        size_bytes=path.stat().st_size,
        n_ctx=llm.n_ctx(),
        n_ctx_train=native.n_ctx_train(llm),
        n_vocab=llm.n_vocab(),
        fim=fim,
        load_ms=(time.perf_counter() - start) * 1000,
        n_threads=threads,
    )
    return llm, fim, info


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a
    container's cpuset), which is what llama.cpp's threads can use. llama-cpp-python's
    own default, half of all cores, left one of two cores idle while the user waited."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


_LOADING = threading.Lock()


def amx_build() -> bool:
    """Whether this llama.cpp build runs its AMX code on this CPU (see below)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def _safe_model_params() -> Iterator[None]:
    """Model parameters that do not crash the process.

    On a CPU with AMX, the AMX matrix multiplication of the llama.cpp that llama-cpp-python
    0.3.36 vendors dies with SIGILL at the first quantized evaluation: its tile
    configuration is optimized away and its worker threads lack the kernel's XTILEDATA
    permission (ggml-org/llama.cpp#26954). That code is reached only through llama.cpp's
    "extra buffer types", which Llama() does not let us set: on a build with AMX they are
    turned off here, for the time of the load (weight repacking goes with them).
    """
    import llama_cpp.llama_cpp as low

    if not amx_build():
        yield
        return
    default = low.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    with _LOADING:
        log.info("model.params extra_buffer_types=off reason=amx")
        low.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            low.llama_model_default_params = default


def tokenize(llm: Any, text: str) -> list[int]:
    tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    return tokens


def single_token(llm: Any, text: str) -> int | None:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    return int(ids[0]) if len(ids) == 1 else None


def next_token(llm: Any, temperature: float) -> int:
    import numpy as np

    logits = native.last_logits(llm)
    if temperature <= 0:
        return int(np.argmax(logits))
    top = np.argpartition(logits, -40)[-40:]
    weights = np.exp((logits[top] - logits[top].max()) / temperature)
    return int(np.random.default_rng().choice(top, p=weights / weights.sum()))
