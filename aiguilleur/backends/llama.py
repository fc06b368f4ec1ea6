"""The embedded llama.cpp engine: one `Llama`, owned by one worker thread.

Requests reach the worker through a queue where the latest request per document wins:
a newer one supersedes the queued one and aborts the running one. The worker keeps the
token sequence held by the KV cache and, for each request, evaluates only the tokens
after the first one that differs; cancellation is checked between evaluation slices and
between generated tokens. With a KV state store, a stored state that shares more of the
prompt than the live context is restored first, and the live state is saved when the
user pauses, before it is overwritten, and at shutdown (see llama_state.StateKeeper).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.backends.fim import FimPrompt, TokenCounter, build_prompt
from aiguilleur.backends.llama_chat import ChatJob, ChatResult, chat_step
from aiguilleur.backends.llama_model import (
    EngineSettings,
    load_model,
    next_token,
    tokenize,
)
from aiguilleur.backends.llama_state import StateKeeper
from aiguilleur.backends.postprocess import stop_point, trim_overlap
from aiguilleur.cache.kv import KVStateStore
from aiguilleur.errors import BackendUnavailable, Cancelled, Superseded
from aiguilleur.types import ChatMessage, Completion, FimTokens, ModelInfo, Request, Usage

log = logging.getLogger(__name__)

# Tokens kept free at the end of the context for generation, beyond max_tokens.
_CTX_MARGIN = 8
# After this long without requests, the live state is saved if no stored state holds
# it. Keystrokes come faster than this; a pause to think does not.
_IDLE_SAVE_S = 0.75
# Tokens per evaluation slice of an idle prefill (tens of ms on a laptop CPU).
_PREFILL_SLICE = 32


def _fail(future: concurrent.futures.Future[Any], error: BaseException) -> None:
    """Settle `future` with `error`, unless it is settled already: asyncio.wrap_future
    cancels the concurrent future (from the loop's thread) when the task awaiting it is
    cancelled, so a queued job's future can turn CANCELLED at any moment."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


def _succeed(future: concurrent.futures.Future[Any], result: Any) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(result)


class EngineStats(msgspec.Struct, frozen=True):
    busy: bool
    queued: int
    completed: int
    cancelled: int
    superseded: int
    generated_tokens: int
    evaluated_tokens: int
    restored: int = 0
    saved: int = 0
    prefilled_tokens: int = 0
    # KV states moved into the context (restore: llama_state_seq_set_data) and out of
    # it (save: get_data plus the store's RAM copy; the disk write happens elsewhere).
    restored_bytes: int = 0
    restore_ms: float = 0.0
    saved_bytes: int = 0
    saved_tokens: int = 0
    save_ms: float = 0.0
    chats: int = 0
    chat_yields: int = 0  # times a chat answer stepped aside for a completion


class _Job:
    __slots__ = ("cancel", "future", "prefill", "reason", "request", "submitted")

    def __init__(self, request: Request, prefill: bool = False) -> None:
        self.request = request
        self.prefill = prefill
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
        store: KVStateStore | None = None,
    ) -> None:
        self.model_path = model_path
        self.settings = settings
        self._on_loaded = on_loaded
        self._keeper = StateKeeper(store if settings.reuse_prefix else None, self._count)
        self._prefill: _Job | None = None
        self._chats: deque[ChatJob] = deque()
        self._chatting: ChatJob | None = None
        self._idle_save_at: float | None = None
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
            "restored": 0,
            "saved": 0,
            "prefilled": 0,
            "restored_bytes": 0,
            "restore_us": 0,
            "saved_bytes": 0,
            "saved_tokens": 0,
            "save_us": 0,
            "chats": 0,
            "chat_yields": 0,
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
                _fail(job.future, BackendUnavailable("the local engine is shut down"))
                return job.future
            old = self._pending.pop(request.key, None)
            if old is not None:
                self._counts["superseded"] += 1
                _fail(old.future, Superseded("superseded"))
            if self._running is not None and self._running.request.key == request.key:
                self._running.abort("superseded")
            if self._prefill is not None:  # the user is typing: a warm-up is moot now
                self._prefill.future.cancel()
                self._prefill = None
            self._pending[request.key] = job
            self._lock.notify()
        return job.future

    def prefill(self, request: Request) -> None:
        """Evaluate the text before the cursor of `request` when nothing else is queued, so
        that the first real request finds it in the KV cache. A real request preempts it
        at once; whatever it evaluated by then stays useful."""
        with self._lock:
            if self._closed or not self.settings.reuse_prefix:
                return
            if self._prefill is not None:
                self._prefill.future.cancel()
            self._prefill = _Job(request, prefill=True)
            self._lock.notify()

    async def chat(
        self, messages: list[ChatMessage], max_tokens: int, on_text: Callable[[str], None]
    ) -> ChatResult:
        """A chat answer, streamed through `on_text` (called from the engine thread).
        Completions go first: the answer pauses while one runs, then resumes."""
        job = ChatJob(messages, max_tokens, on_text)
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the local engine is shut down")
            self._chats.append(job)
            self._lock.notify()
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel.set()
            with self._lock:
                if job in self._chats:
                    self._chats.remove(job)
                    job.future.cancel()
            raise

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
                    _fail(job.future, Cancelled("cancelled"))
                    return
            if self._running is not None and self._running.future is future:
                self._running.abort("cancelled")

    def stats(self) -> EngineStats:
        with self._lock:
            c = self._counts
            return EngineStats(
                busy=self._running is not None or self._chatting is not None,
                queued=len(self._pending),
                completed=c["completed"],
                cancelled=c["cancelled"],
                superseded=c["superseded"],
                generated_tokens=c["generated"],
                evaluated_tokens=c["evaluated"],
                restored=c["restored"],
                saved=c["saved"],
                prefilled_tokens=c["prefilled"],
                restored_bytes=c["restored_bytes"],
                restore_ms=c["restore_us"] / 1000,
                saved_bytes=c["saved_bytes"],
                saved_tokens=c["saved_tokens"],
                chats=c["chats"],
                chat_yields=c["chat_yields"],
                save_ms=c["save_us"] / 1000,
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in self._pending.values():
                _fail(job.future, BackendUnavailable("the local engine is shut down"))
            self._pending.clear()
            if self._running is not None:
                self._running.abort("cancelled")
            if self._prefill is not None:
                self._prefill.future.cancel()
                self._prefill = None
            for chat in self._chats:
                _fail(chat.future, BackendUnavailable("the local engine is shut down"))
            self._chats.clear()
            if self._chatting is not None:
                self._chatting.cancel.set()
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
            _fail(self.loaded, BackendUnavailable(message))
            if self._on_loaded:
                self._on_loaded(None, message)
            self._fail_all(BackendUnavailable(message))
            return
        _succeed(self.loaded, info)
        if self._on_loaded:
            self._on_loaded(info, None)
        while True:
            job = self._next_job()
            if job is None and self._chatting is not None:
                self._run_chat(self._chatting)
                continue
            if job is None:
                if self._closed:
                    break
                self._keeper.save_if_dirty(self._llm)  # a pause: keep what the context holds
                continue
            try:
                if job.future.set_running_or_notify_cancel():
                    result = self._prefill_job(job) if job.prefill else self._complete(job)
                    if not job.prefill:
                        self._count("completed")
                    _succeed(job.future, result)
            except Cancelled as error:
                if not job.prefill:
                    self._count("superseded" if isinstance(error, Superseded) else "cancelled")
                _fail(job.future, error)
            except Exception as error:
                log.exception("engine.request_failed")
                _fail(job.future, BackendUnavailable(f"local engine error: {error}"))
            finally:
                with self._lock:
                    self._running = None
                self._idle_save_at = time.monotonic() + _IDLE_SAVE_S
        self._keeper.save_if_dirty(self._llm)  # the next start begins where this one ends
        self._llm = None

    def _next_job(self) -> _Job | None:
        """The next request, else a prefill, else None when closing or when it is time
        for an idle save."""
        with self._lock:
            while not self._closed:
                if self._pending:
                    _, job = self._pending.popitem(last=False)
                    self._running = job
                    return job
                if self._chats:
                    self._chatting = self._chats.popleft()
                    return None
                if self._prefill is not None:
                    job, self._prefill = self._prefill, None
                    self._running = job
                    return job
                if self._idle_save_at is None:
                    self._lock.wait()
                    continue
                wait = self._idle_save_at - time.monotonic()
                if wait <= 0:
                    self._idle_save_at = None
                    return None
                self._lock.wait(wait)
            return None

    def _run_chat(self, job: ChatJob) -> None:
        def waiting() -> bool:
            return bool(self._pending) or self._closed

        try:
            if job.future.cancelled():
                done = True
            else:
                batch = self.settings.n_batch
                n_ctx = self.settings.n_ctx
                done = chat_step(
                    self._llm,
                    self._keeper,
                    job,
                    batch,
                    n_ctx,
                    waiting,
                    lambda n: self._count("evaluated", n),
                )
                if done:
                    self._count("chats")
                    _succeed(job.future, job.result())
        except Cancelled as error:
            done = True
            if not job.future.done():
                _fail(job.future, error)
        except Exception as error:
            done = True
            log.exception("engine.chat_failed")
            if not job.future.done():
                _fail(job.future, BackendUnavailable(f"local chat failed: {error}"))
        with self._lock:
            self._chatting = None
            if not done and self._closed:
                _fail(job.future, BackendUnavailable("the local engine is shut down"))
            elif not done:
                self._chats.appendleft(job)
                self._counts["chat_yields"] += 1
        self._idle_save_at = time.monotonic() + _IDLE_SAVE_S

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            self._closed = True
            for job in self._pending.values():
                _fail(job.future, error)
            self._pending.clear()

    def _load(self) -> ModelInfo:
        llm, fim, info = load_model(self.model_path, self.settings)
        self._llm, self._fim = llm, fim
        self._tokens = TokenCounter(self._tokenize)
        return info

    def _tokenize(self, text: str) -> list[int]:
        return tokenize(self._llm, text)

    def _prompt(self, req: Request) -> tuple[FimPrompt, list[int]]:
        """The FIM prompt and its tokens, cut to fit the context."""
        fim = self._fim
        if fim is None or self._tokens is None:
            raise BackendUnavailable(
                f"{self.model_path.name} has no fill-in-the-middle tokens: use a code model "
                "(e.g. Qwen2.5-Coder; `aiguilleur pull`)"
            )
        room = self.settings.n_ctx - req.params.max_tokens - _CTX_MARGIN
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
        return prompt, tokens

    def _complete(self, job: _Job) -> Completion:
        req = job.request
        started = time.perf_counter()
        queue_ms = (started - job.submitted) * 1000
        _, tokens = self._prompt(req)
        # Reuse the KV cache (live, else a stored state) up to the first differing token.
        n_past, restored = 0, 0
        if self.settings.reuse_prefix:
            n_past, restored = self._keeper.reuse(self._llm, tokens)
        n_past = min(n_past, len(tokens) - 1)  # the last prompt token must be evaluated
        restore_ms = (time.perf_counter() - started) * 1000
        self._eval(job, tokens, n_past)
        prompt_done = time.perf_counter()

        text, n_gen, reason = self._generate(job, prompt_done)
        text = trim_overlap(text, req.context.suffix)
        finished = time.perf_counter()
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=len(tokens) - n_past,
            reused_tokens=n_past,
            restored_tokens=restored,
            completion_tokens=n_gen,
            prompt_ms=(prompt_done - started) * 1000,
            restore_ms=restore_ms,
            generation_ms=(finished - prompt_done) * 1000,
            queue_ms=queue_ms,
        )
        log.debug(
            "engine.done prompt=%d evaluated=%d restored=%d generated=%d prompt_ms=%.1f "
            "gen_ms=%.1f",
            usage.prompt_tokens,
            usage.evaluated_tokens,
            restored,
            n_gen,
            usage.prompt_ms,
            usage.generation_ms,
        )
        return Completion(
            text, usage, route="local", model=self.model_path.name, stop_reason=reason
        )

    def _prefill_job(self, job: _Job) -> Completion:
        prompt, tokens = self._prompt(job.request)
        target = min(prompt.prefix_end, len(tokens))
        log.debug(
            "prefill.start path=%s tokens=%d target=%d",
            job.request.context.path,
            len(tokens),
            target,
        )
        n_past, _ = self._keeper.reuse(self._llm, tokens[:target])
        done = self._eval(job, tokens[:target], n_past, yield_to_requests=True)
        self._count("prefilled", done)
        return Completion("", Usage(evaluated_tokens=done), route="local", model="")

    def _eval(
        self, job: _Job, tokens: list[int], n_past: int, yield_to_requests: bool = False
    ) -> int:
        """Evaluate tokens[n_past:] in slices, checking for cancellation between them.
        Returns how many were evaluated (a prefill stops early when a request arrives)."""
        llm = self._llm
        llm.n_tokens = n_past
        self._keeper.truncated(n_past)
        # A prefill runs in small slices: a request waits for at most one of them.
        batch = (
            min(self.settings.n_batch, _PREFILL_SLICE)
            if yield_to_requests
            else self.settings.n_batch
        )
        done = 0
        for i in range(n_past, len(tokens), batch):
            job.check()
            if yield_to_requests and self._pending:
                break
            piece = tokens[i : i + batch]
            llm.eval(piece)
            done += len(piece)
            self._count("evaluated", len(piece))
        return done

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
            token = next_token(llm, gen.temperature)
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
