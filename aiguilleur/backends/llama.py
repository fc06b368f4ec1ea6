"""The embedded llama.cpp engine: one `Llama`, owned by one worker thread.

Requests reach the worker through a queue where the latest request per editor session
wins (Request.key):
a newer one supersedes the queued one and aborts the running one. The worker keeps the
token sequence held by the KV cache and, for each request, evaluates only the tokens
after the first one that differs; cancellation is checked between evaluation slices and
between generated tokens. With a KV state store, a stored state that shares more of the
prompt than the live context is restored first, and the live state is saved when the
user pauses, before it is overwritten, and at shutdown (see llama_state.StateKeeper).
Work nobody waits for yet comes last and gives way: a prefill of a file just opened, then
a prefetch (the suggestion after an accepted one), both stopped as soon as a request or a
chat arrives.
This module is the queue and the thread; llama_fim runs one completion, llama_chat one
step of a chat answer.
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

from aiguilleur.backends.counts import Count, EngineCounts
from aiguilleur.backends.llama_chat import ChatJob, ChatResult, chat_step
from aiguilleur.backends.llama_fim import FimJob, FimRunner
from aiguilleur.backends.llama_model import EngineSettings, LiveThreads, load_model, release
from aiguilleur.backends.llama_state import StateKeeper
from aiguilleur.backends.threads import ThreadChoice, ThreadGovernor, usable_cores
from aiguilleur.cache.kv import KVStateStore
from aiguilleur.errors import BackendUnavailable, Cancelled, MachineBusy, Superseded
from aiguilleur.types import ChatMessage, Completion, ModelInfo, Request

log = logging.getLogger(__name__)

# After this long without requests, the live state is saved if no stored state holds
# it. Keystrokes come faster than this; a pause to think does not.
_IDLE_SAVE_S = 0.75
# While a prefill waits for other programs to leave the cores, the load is measured again
# this often.
_BUSY_RECHECK_S = 0.5


def _fail(future: concurrent.futures.Future[Any], error: BaseException) -> None:
    """Settle `future` with `error`, unless it is settled already: asyncio.wrap_future
    cancels the concurrent future (from the loop's thread) when the task awaiting it is
    cancelled, so a queued job's future can turn CANCELLED at any moment."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


def _succeed(future: concurrent.futures.Future[Any], result: Any) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(result)


class EngineStats(EngineCounts, kw_only=True):
    """A snapshot of the tally (a new one at each call: not frozen, as the tally is not),
    with what the engine is doing now."""

    busy: bool  # a job running, or background work (prefill, prefetch, chat) waiting
    queued: int
    threads: ThreadChoice | None = None  # how many threads, and why (threads.py)


class LlamaEngine:
    """Backend `local`: completions from a GGUF model loaded in this process."""

    name = "local"

    def __init__(
        self,
        model_path: Path,
        settings: EngineSettings,
        on_loaded: Callable[[ModelInfo | None, str | None], None] | None = None,
        store: KVStateStore | None = None,
        governor: ThreadGovernor | None = None,
    ) -> None:
        self.model_path = model_path
        self.settings = settings
        # Default: one that reads this machine (threads.py), made on the engine thread,
        # which is the thread whose waits it reads.
        self._governor = governor
        self._on_loaded = on_loaded
        self._keeper = StateKeeper(store if settings.reuse_prefix else None, self._count)
        self._prefill: FimJob | None = None
        self._prefetch: FimJob | None = None
        self._chats: deque[ChatJob] = deque()
        self._chatting: ChatJob | None = None
        self._idle_save_at: float | None = None
        self.loaded: concurrent.futures.Future[ModelInfo] = concurrent.futures.Future()
        self._lock = threading.Condition()
        self._pending: OrderedDict[str, FimJob] = OrderedDict()
        self._running: FimJob | None = None
        self._closed = False
        self._counts = EngineCounts()
        self._llm: Any = None
        self._runner: FimRunner | None = None
        self._threads: LiveThreads | None = None
        # The prefill waits for other programs to leave the cores: not work the engine
        # will take up when it is free, so the engine does not count as busy for it.
        self._prefill_paused = False
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()

    # -- public API (any thread / the event loop) ---------------------------------------

    def submit(self, request: Request) -> concurrent.futures.Future[Completion]:
        job = FimJob(request)
        with self._lock:
            if self._closed:
                _fail(job.future, BackendUnavailable("the local engine is shut down"))
                return job.future
            old = self._pending.pop(request.key, None)
            if old is not None:
                self._counts.add(Count.SUPERSEDED)
                _fail(old.future, Superseded("superseded"))
            if self._running is not None and self._running.request.key == request.key:
                self._running.abort("superseded")
            if self._prefill is not None:  # the user is typing: a warm-up is moot now
                self._prefill.future.cancel()
                self._prefill = None
            if self._running is not None and self._running.yields is not None:
                self._running.abort("cancelled")  # a prefetch gives way at once
            self._pending[request.key] = job
            self._lock.notify()
        return job.future

    def prefill(self, request: Request) -> concurrent.futures.Future[Completion]:
        """Evaluate the text before the cursor of `request` when nothing else is queued, so
        that the first real request finds it in the KV cache. A real request preempts it
        at once; whatever it evaluated by then stays useful. The future tells how far it
        got (Usage: prompt_tokens, of which reused_tokens were in the cache and
        evaluated_tokens evaluated now); it is cancelled when a request or another
        prefill replaced it, and fails when the engine is closed or keeps no cache."""
        job = FimJob(request, prefill=True)
        with self._lock:
            if self._closed or not self.settings.reuse_prefix:
                _fail(job.future, BackendUnavailable("the local engine keeps no prompt cache"))
                return job.future
            if self._prefill is not None:
                self._prefill.future.cancel()
            self._prefill = job
            self._prefill_paused = False
            self._lock.notify()
        return job.future

    async def prefetch(self, request: Request) -> Completion:
        """The completion of `request` computed when the engine has nothing else to do, for
        an answer the user is likely to ask for next (after accepting a suggestion). It
        replaces an earlier prefetch, never delays a request or a chat (it stops for them:
        Cancelled) and whatever it evaluated stays in the KV cache for them."""
        job = FimJob(request, yields=lambda: bool(self._pending or self._chats))
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the local engine is shut down")
            if self._prefetch is not None:
                _fail(self._prefetch.future, Cancelled("replaced"))
            self._prefetch = job
            self._lock.notify()
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.abort("cancelled")
            raise

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
                    self._counts.add(Count.CANCELLED)
                    _fail(job.future, Cancelled("cancelled"))
                    return
            if self._running is not None and self._running.future is future:
                self._running.abort("cancelled")

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                **msgspec.structs.asdict(self._counts),
                # Background work waiting its turn counts too: a caller that waits for
                # an idle engine would otherwise race a prefill not yet picked up.
                busy=any(
                    work is not None for work in (self._running, self._chatting, self._prefetch)
                )
                or bool(self._chats)
                or (self._prefill is not None and not self._prefill_paused),
                queued=len(self._pending),
                threads=threads.choice if (threads := self._threads) is not None else None,
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
            if self._prefetch is not None:
                _fail(self._prefetch.future, BackendUnavailable("the local engine is shut down"))
                self._prefetch = None
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
                    runner = self._runner
                    assert runner is not None  # set before the first job is taken
                    assert self._threads is not None
                    self._threads.adapt()
                    result = runner.prefill(job) if job.prefill else runner.complete(job)
                    if job.yields is not None:
                        self._count(Count.PREFETCHED)
                    elif not job.prefill:
                        self._count(Count.COMPLETED)
                    _succeed(job.future, result)
            except MachineBusy as error:  # a prefill or a prefetch, stopped midway
                self._count(Count.BACKGROUND_PAUSED)
                if job.prefill:
                    self._resume_later(job)
                _fail(job.future, error)
            except Cancelled as error:
                if job.yields is not None:
                    self._count(Count.PREFETCH_YIELDS)
                elif not job.prefill:
                    self._count(
                        Count.SUPERSEDED if isinstance(error, Superseded) else Count.CANCELLED
                    )
                _fail(job.future, error)
            except BackendUnavailable as error:  # e.g. a chat model asked to fill in code
                _fail(job.future, error)
            except Exception as error:
                log.exception("engine.request_failed")
                _fail(job.future, BackendUnavailable(f"local engine error: {error}"))
            finally:
                with self._lock:
                    self._running = None
                self._idle_save_at = time.monotonic() + _IDLE_SAVE_S
        self._keeper.save_if_dirty(self._llm, at_least=1)  # the next start begins here
        llm, self._llm = self._llm, None
        self._runner = self._threads = None
        release(llm)  # an engine replaced by new settings leaves one model in memory

    def _turn(self) -> str:
        """Whose request runs next (one pending per session: latest wins within it).
        Across sessions, the most recent first: the one the user is typing in now;
        but one that another session's request has already gone before runs first, so
        no session waits more than one turn however fast another types."""
        for key, job in self._pending.items():  # oldest first
            if job.passed_over:
                return key
        return next(reversed(self._pending))

    def _next_job(self) -> FimJob | None:
        """The next request, else a prefill, else None when closing or when it is time
        for an idle save."""
        with self._lock:
            while not self._closed:
                if self._pending:
                    job = self._pending.pop(self._turn())
                    for other in self._pending.values():
                        other.passed_over += 1
                    self._running = job
                    return job
                if self._chats:
                    self._chatting = self._chats.popleft()
                    return None
                paused = self._paused_for_machine()
                if self._prefill is not None and not paused:
                    job, self._prefill = self._prefill, None
                    self._running = job
                    return job
                if self._prefetch is not None:
                    job, self._prefetch = self._prefetch, None
                    self._running = job
                    return job
                timeout = _BUSY_RECHECK_S if paused else None
                if self._idle_save_at is not None:
                    wait = self._idle_save_at - time.monotonic()
                    if wait <= 0:
                        self._idle_save_at = None
                        return None
                    timeout = wait if timeout is None else min(timeout, wait)
                self._lock.wait(timeout)
            return None

    def _paused_for_machine(self) -> bool:
        """Whether background work waits because other programs need the cores (called
        with the lock held, on the engine thread): a prefetch is dropped (a request for
        its text must not wait for the machine), a prefill waits for the load to drop."""
        if (self._prefill is None and self._prefetch is None) or self._threads is None:
            return False
        if not self._threads.adapt().contended:
            self._prefill_paused = False
            return False
        if self._prefetch is not None:
            _fail(self._prefetch.future, MachineBusy("other programs need the cores"))
            self._prefetch = None
            self._counts.add(Count.BACKGROUND_PAUSED)
        if self._prefill is not None and not self._prefill_paused:
            self._prefill_paused = True
            self._counts.add(Count.BACKGROUND_PAUSED)
        return self._prefill is not None

    def _resume_later(self, job: FimJob) -> None:
        """A prefill stopped for the machine: taken up again when the load drops, unless
        a newer prefill or a request came meanwhile (what it evaluated stays useful)."""
        with self._lock:
            if self._prefill is None and not self._pending and not self._closed:
                self._prefill = FimJob(job.request, prefill=True)
                self._prefill_paused = True  # counted once, where it stopped

    def _run_chat(self, job: ChatJob) -> None:
        def waiting() -> bool:
            return bool(self._pending) or self._closed

        try:
            if job.future.cancelled():
                done = True
            else:
                batch = self.settings.n_batch
                n_ctx = self.settings.n_ctx
                threads = self._threads
                assert threads is not None  # set with the model, before any job
                done = chat_step(
                    self._llm,
                    self._keeper,
                    job,
                    batch,
                    n_ctx,
                    waiting,
                    lambda n: self._count(Count.EVALUATED, n),
                    threads,
                )
                if done:
                    self._count(Count.CHATS)
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
                self._counts.add(Count.CHAT_YIELDS)
        self._idle_save_at = time.monotonic() + _IDLE_SAVE_S

    def _count(self, count: Count, n: float = 1) -> None:
        with self._lock:
            self._counts.add(count, n)

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            self._closed = True
            for job in self._pending.values():
                _fail(job.future, error)
            self._pending.clear()

    def _load(self) -> ModelInfo:
        settings = self.settings
        governor = self._governor or ThreadGovernor(
            usable_cores(), settings.n_threads, adapt=settings.adapt_to_load
        )
        llm, fim, info = load_model(self.model_path, settings)
        self._llm = llm
        threads = LiveThreads(llm, governor, info.n_threads)
        self._runner = FimRunner(
            llm,
            fim,
            settings,
            self._keeper,
            self.model_path.name,
            self._count,
            lambda: bool(self._pending),
            threads,
        )
        self._threads = threads
        return info
