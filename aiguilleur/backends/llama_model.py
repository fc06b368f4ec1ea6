"""Loading a GGUF with llama-cpp-python and the few low-level calls the engine makes on it."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.backends import llama_native as native
from aiguilleur.backends.fim import resolve_fim_tokens
from aiguilleur.backends.threads import ThreadChoice, ThreadGovernor, usable_cores
from aiguilleur.errors import BackendUnavailable
from aiguilleur.types import FimTokens, ModelInfo

log = logging.getLogger(__name__)


class ModelLoads(msgspec.Struct, frozen=True):
    """The models this process has loaded, and how many are in memory now: one at a time,
    unless two windows' standalone servers share a process (they do not)."""

    loaded: int
    in_memory: int
    amx_guard: bool  # loaded without llama.cpp's extra buffer types (see below)


_loaded: list[int] = [0]
_in_memory: weakref.WeakSet[Any] = weakref.WeakSet()


def release(llm: Any) -> None:
    """Free a model's memory now, not whenever the collector finds Llama's own cycle."""
    with _GUARD:
        _in_memory.discard(llm)
    llm.close()


def model_loads() -> ModelLoads:
    with _GUARD:
        return ModelLoads(_loaded[0], len(_in_memory), bool(_guarded))


class EngineSettings(msgspec.Struct, frozen=True):
    n_ctx: int = 4096
    n_batch: int = 128
    n_threads: int | None = None  # None: the cores other programs leave (threads.py)
    # Off only for the bench's "fresh prompt per request" baseline.
    reuse_prefix: bool = True
    speculative: bool = False  # drafts from the context (speculative.py), greedy only
    # Threads and background work follow the machine's load (threads.py).
    adapt_to_load: bool = True


def load_model(path: Path, settings: EngineSettings) -> tuple[Any, FimTokens | None, ModelInfo]:
    """(Llama, FIM tokens or None, info). Raises on a missing or unloadable file."""
    if not path.is_file():
        raise BackendUnavailable(f"model file not found: {path}")
    import llama_cpp
    from llama_cpp import Llama

    start = time.perf_counter()
    threads = settings.n_threads or usable_cores()
    if amx_build():
        log.info("model.params extra_buffer_types=off reason=amx")
    with _LOADING:
        llm = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    with _GUARD:
        _loaded[0] += 1
        _in_memory.add(llm)
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


_GUARD = threading.Lock()
# One load at a time in a process: Llama() points fds 1 and 2 at /dev/null while it loads
# and back after, so two loads side by side can leave them there for good (the log and
# anything else on stderr lost, as seen with four loads at once).
_LOADING = threading.Lock()
_guarded: bool | None = None  # None until the guard below has run: whether it applies


def amx_build() -> bool:
    """Whether this llama.cpp build runs its AMX code on this CPU (see below).

    Asked once, under a lock: llama.cpp builds the answer in one static string, and two
    threads asking at once can read it half written (two engines loading side by side
    read "no AMX" that way, and one loaded without the guard)."""
    with _GUARD:
        return _guard_extra_buffers()


def _guard_extra_buffers() -> bool:
    """Model parameters that do not crash the process, for every load in it.

    On a CPU with AMX, the AMX matrix multiplication of the llama.cpp that llama-cpp-python
    0.3.36 vendors dies with SIGILL at the first quantized evaluation: its tile
    configuration is optimized away and its worker threads lack the kernel's XTILEDATA
    permission (ggml-org/llama.cpp#26954). That code is reached only through llama.cpp's
    "extra buffer types", which Llama() does not let us set: on a build with AMX they are
    turned off in llama-cpp-python's default model parameters, once and for the life of
    the process (weight repacking goes with them), so that no load can miss it. Call
    with _GUARD held."""
    global _guarded
    if _guarded is not None:
        return _guarded
    import llama_cpp.llama_cpp as low

    _guarded = b"AMX_INT8 = 1" in low.llama_print_system_info()
    if _guarded:
        default = low.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = without_extra_buffers
    return _guarded


class LiveThreads:
    """The thread count of a loaded model, kept to its governor's choice. Called from the
    engine thread only, between two evaluations."""

    def __init__(self, llm: Any, governor: ThreadGovernor, threads: int) -> None:
        self.llm = llm
        self.governor = governor
        self.applied = threads

    @property
    def choice(self) -> ThreadChoice:
        return self.governor.choice

    def adapt(self) -> ThreadChoice:
        """Measure the machine if it is time to, and apply a changed choice."""
        choice = self.governor.update()
        if choice.threads != self.applied:
            native.set_threads(self.llm, choice.threads)
            log.info(
                "engine.threads threads=%d was=%d others=%s",
                choice.threads,
                self.applied,
                choice.others,
            )
            self.applied = choice.threads
        return choice


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
