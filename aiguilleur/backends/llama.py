"""The embedded llama.cpp engine: one `Llama`, owned by one worker thread.

Requests reach the worker through a queue where the latest request per document wins:
a newer one supersedes the queued one and aborts the running one. The worker keeps the
token sequence held by the KV cache and, for each request, evaluates only the tokens
after the first one that differs; cancellation is checked between evaluation slices and
between generated tokens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.backends.base import BackendUnavailable, Cancelled, Superseded
from aiguilleur.backends.fim import FimTokens, TokenCounter, build_prompt, resolve_fim_tokens
from aiguilleur.backends.postprocess import stop_point, trim_overlap
from aiguilleur.types import Completion, Request, Usage

log = logging.getLogger(__name__)

# Tokens kept free at the end of the context for generation, beyond max_tokens.
_CTX_MARGIN = 8


class ModelInfo(msgspec.Struct, frozen=True):
    path: str
    name: str
    size_bytes: int
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    fim: FimTokens | None
    load_ms: float


class EngineSettings(msgspec.Struct, frozen=True):
    n_ctx: int = 4096
    n_batch: int = 128
    n_threads: int | None = None
    # Off only for the bench's "fresh prompt per request" baseline.
    reuse_prefix: bool = True


class EngineStats(msgspec.Struct, frozen=True):
    busy: bool
    queued: int
    completed: int
    cancelled: int
    superseded: int
    generated_tokens: int
    evaluated_tokens: int


class _Job:
    __slots__ = ("cancel", "future", "reason", "request", "submitted")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.cancel = threading.Event()
        self.reason = "cancelled"
        self.future: concurrent.futures.Future[Completion] = concurrent.futures.Future()
        self.submitted = time.perf_counter()

    def abort(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Superseded(self.reason) if self.reason == "superseded" else Cancelled(self.reason)


class LlamaEngine:
    """Backend `local`: completions from a GGUF model loaded in this process."""

    name = "local"

    def __init__(
        self,
        model_path: Path,
        settings: EngineSettings,
        on_loaded: Callable[[ModelInfo | None, str | None], None] | None = None,
    ) -> None:
        self.model_path = model_path
        self.settings = settings
        self._on_loaded = on_loaded
        self.loaded: concurrent.futures.Future[ModelInfo] = concurrent.futures.Future()
        self._lock = threading.Condition()
        self._pending: OrderedDict[str, _Job] = OrderedDict()
        self._running: _Job | None = None
        self._closed = False
        self._counts = {
            "completed": 0,
            "cancelled": 0,
            "superseded": 0,
            "generated": 0,
            "evaluated": 0,
        }
        self._llm: Any = None
        self._fim: FimTokens | None = None
        self._tokens: TokenCounter | None = None
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()

    # -- public API (any thread / the event loop) ---------------------------------------

    def submit(self, request: Request) -> concurrent.futures.Future[Completion]:
        job = _Job(request)
        with self._lock:
            if self._closed:
                job.future.set_exception(BackendUnavailable("the local engine is shut down"))
                return job.future
            old = self._pending.pop(request.key, None)
            if old is not None:
                self._counts["superseded"] += 1
                old.future.set_exception(Superseded("superseded"))
            if self._running is not None and self._running.request.key == request.key:
                self._running.abort("superseded")
            self._pending[request.key] = job
            self._lock.notify()
        return job.future

    async def complete(self, request: Request) -> Completion:
        future = self.submit(request)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.cancel(future)
            raise

    def cancel(self, future: concurrent.futures.Future[Completion]) -> None:
        with self._lock:
            for key, job in list(self._pending.items()):
                if job.future is future:
                    del self._pending[key]
                    self._counts["cancelled"] += 1
                    job.future.set_exception(Cancelled("cancelled"))
                    return
            if self._running is not None and self._running.future is future:
                self._running.abort("cancelled")

    def stats(self) -> EngineStats:
        with self._lock:
            c = self._counts
            return EngineStats(
                busy=self._running is not None,
                queued=len(self._pending),
                completed=c["completed"],
                cancelled=c["cancelled"],
                superseded=c["superseded"],
                generated_tokens=c["generated"],
                evaluated_tokens=c["evaluated"],
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in self._pending.values():
                job.future.set_exception(BackendUnavailable("the local engine is shut down"))
            self._pending.clear()
            if self._running is not None:
                self._running.abort("cancelled")
            self._lock.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            info = self._load()
        except Exception as error:  # any load failure leaves the server running, model-less
            message = f"cannot load {self.model_path}: {error}"
            log.error("engine.load_failed path=%s error=%s", self.model_path, error)
            self.loaded.set_exception(BackendUnavailable(message))
            if self._on_loaded:
                self._on_loaded(None, message)
            self._fail_all(BackendUnavailable(message))
            return
        self.loaded.set_result(info)
        if self._on_loaded:
            self._on_loaded(info, None)
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed:
                    break
                _, job = self._pending.popitem(last=False)
                self._running = job
            try:
                if job.future.set_running_or_notify_cancel():
                    result = self._complete(job)
                    self._count("completed")
                    job.future.set_result(result)
            except Cancelled as error:
                self._count("superseded" if isinstance(error, Superseded) else "cancelled")
                job.future.set_exception(error)
            except Exception as error:
                log.exception("engine.request_failed")
                job.future.set_exception(BackendUnavailable(f"local engine error: {error}"))
            finally:
                with self._lock:
                    self._running = None
        self._llm = None

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            self._closed = True
            for job in self._pending.values():
                job.future.set_exception(error)
            self._pending.clear()

    def _load(self) -> ModelInfo:
        if not self.model_path.is_file():
            raise BackendUnavailable(f"model file not found: {self.model_path}")
        from llama_cpp import Llama

        start = time.perf_counter()
        llm = Llama(
            model_path=str(self.model_path),
            n_ctx=self.settings.n_ctx,
            n_batch=self.settings.n_batch,
            n_ubatch=self.settings.n_batch,
            n_threads=self.settings.n_threads,
            verbose=False,
        )
        self._llm = llm
        import llama_cpp

        vocab = llm._model.vocab
        gguf_ids = [
            getattr(llama_cpp, f"llama_vocab_fim_{k}")(vocab)
            for k in ("pre", "suf", "mid", "pad", "rep", "sep")
        ]
        bos = llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else -1
        ends = [llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)]
        self._fim = resolve_fim_tokens(gguf_ids, bos, ends, self._single_token)
        self._tokens = TokenCounter(self._tokenize)
        name = llm.metadata.get("general.name", self.model_path.stem)
        return ModelInfo(
            path=str(self.model_path),
            name=str(name),
            size_bytes=self.model_path.stat().st_size,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            n_vocab=llm.n_vocab(),
            fim=self._fim,
            load_ms=(time.perf_counter() - start) * 1000,
        )

    def _tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens

    def _single_token(self, text: str) -> int | None:
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return int(ids[0]) if len(ids) == 1 else None

    def _complete(self, job: _Job) -> Completion:
        llm = self._llm
        req = job.request
        fim = self._fim
        if fim is None or self._tokens is None:
            raise BackendUnavailable(
                f"{self.model_path.name} has no fill-in-the-middle tokens: use a code model "
                "(e.g. Qwen2.5-Coder; `aiguilleur pull`)"
            )
        started = time.perf_counter()
        queue_ms = (started - job.submitted) * 1000
        gen = req.params
        room = self.settings.n_ctx - gen.max_tokens - _CTX_MARGIN
        budget = max(16, min(req.prefix_tokens, room - req.suffix_tokens))
        extra = max(0, min(req.extra_tokens, room - req.suffix_tokens - budget))
        prompt = build_prompt(
            req.context,
            fim,
            self._tokenize,
            self._tokens,
            prefix_tokens=budget,
            suffix_tokens=req.suffix_tokens,
            extra_tokens=extra,
        )
        tokens = prompt.tokens
        if len(tokens) > room:  # only when the budgets themselves exceed the context
            tokens = tokens[-room:]

        # Reuse the KV cache up to the first token that differs.
        n_past = self._common_prefix(tokens) if self.settings.reuse_prefix else 0
        n_past = min(n_past, len(tokens) - 1)  # the last prompt token must be evaluated
        llm.n_tokens = n_past
        batch = self.settings.n_batch
        for i in range(n_past, len(tokens), batch):
            job.check()
            llm.eval(tokens[i : i + batch])
            self._count("evaluated", min(batch, len(tokens) - i))
        prompt_done = time.perf_counter()

        text, n_gen, reason = self._generate(job, prompt_done)
        text = trim_overlap(text, req.context.suffix)
        finished = time.perf_counter()
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=len(tokens) - n_past,
            reused_tokens=n_past,
            completion_tokens=n_gen,
            prompt_ms=(prompt_done - started) * 1000,
            generation_ms=(finished - prompt_done) * 1000,
            queue_ms=queue_ms,
        )
        log.debug(
            "engine.done prompt=%d evaluated=%d generated=%d prompt_ms=%.1f gen_ms=%.1f",
            usage.prompt_tokens,
            usage.evaluated_tokens,
            n_gen,
            usage.prompt_ms,
            usage.generation_ms,
        )
        return Completion(
            text, usage, route="local", model=self.model_path.name, stop_reason=reason
        )

    def _common_prefix(self, tokens: list[int]) -> int:
        import numpy as np

        llm = self._llm
        n = min(llm.n_tokens, len(tokens))
        if n == 0:
            return 0
        diff = np.flatnonzero(llm.input_ids[:n] != np.asarray(tokens[:n], dtype=np.intc))
        return int(diff[0]) if diff.size else n

    def _next_token(self, temperature: float) -> int:
        import llama_cpp
        import numpy as np

        llm = self._llm
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),)
        )
        if temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(logits, -40)[-40:]
        weights = np.exp((logits[top] - logits[top].max()) / temperature)
        return int(np.random.default_rng().choice(top, p=weights / weights.sum()))

    def _generate(self, job: _Job, t0: float) -> tuple[str, int, str]:
        import llama_cpp

        llm = self._llm
        gen = job.request.params
        assert self._fim is not None
        stops = self._fim.stops
        vocab = llm._model.vocab
        deadline = t0 + gen.time_budget_ms / 1000
        raw = b""
        n = 0
        reason = "length"
        text = ""
        while n < gen.max_tokens:
            job.check()
            if time.perf_counter() > deadline:
                reason = "time"
                break
            token = self._next_token(gen.temperature)
            if token in stops or llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "eog"
                break
            raw += llm.detokenize([token])
            n += 1
            text = raw.decode("utf-8", errors="ignore")
            cut = stop_point(text, single_line=gen.single_line, min_indent=gen.min_indent)
            if cut is not None:
                return text[:cut], n, "boundary"
            self._count("generated")
            if n < gen.max_tokens:
                if llm.n_tokens >= self.settings.n_ctx - 1:
                    reason = "context"
                    break
                llm.eval([token])
        return text, n, reason
