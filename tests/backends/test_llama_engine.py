"""The engine's queue when the task awaiting a request is cancelled.

asyncio.wrap_future cancels the concurrent future from the event loop's thread when the
awaiting task is cancelled, so a queued job's future can be CANCELLED before the engine
cancels or supersedes it. Seen in VS Code, where typing cancels inline requests: the
next request failed with InvalidStateError instead of being answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings
from aiguilleur.errors import Cancelled
from aiguilleur.types import FimContext, GenerationParams, Request, RequestKind
from tests.support.machine import FakeMachine


def request(prefix: str) -> Request:
    return Request(
        RequestKind.COMPLETION,
        key="session",
        context=FimContext(path="a.py", prefix=prefix, suffix="\n"),
        params=GenerationParams(max_tokens=4),
    )


def test_a_job_cancelled_by_its_waiter_can_be_cancelled_and_superseded(
    tiny_model: Path,
) -> None:
    engine = LlamaEngine(tiny_model, EngineSettings(n_ctx=512, n_batch=64))
    try:
        engine.loaded.result(60)
        # Holding the engine's lock keeps the worker from taking the jobs meanwhile.
        with engine._lock:
            first = engine.submit(request("def f():\n    return "))
            assert first.cancel()  # what wrap_future does when the awaiting task is cancelled
            engine.cancel(first)
            second = engine.submit(request("def f():\n    return 1"))
            assert second.cancel()
            third = engine.submit(request("def f():\n    return 12"))  # supersedes `second`
        assert third.result(60).text is not None
        assert engine.stats().queued == 0
    finally:
        engine.close()
        engine.join(30)


async def test_cancelling_the_awaiting_task_then_asking_again_gets_an_answer(
    tiny_model: Path,
) -> None:
    engine = LlamaEngine(tiny_model, EngineSettings(n_ctx=512, n_batch=64))
    try:
        await asyncio.wrap_future(engine.loaded)
        with engine._lock:  # queued, not yet taken by the worker
            waiting = asyncio.ensure_future(engine.complete(request("x = ")))
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        answer = await engine.complete(request("x = 1"))
        assert answer.usage.prompt_tokens > 0
    finally:
        engine.close()
        engine.join(30)


async def test_a_prefetch_gives_way_to_a_request_at_once(small_model: Path) -> None:
    # A prefetch that runs whatever else the machine does (one thread: nothing spins).
    settings = EngineSettings(n_ctx=4096, n_batch=64, n_threads=1, adapt_to_load=False)
    engine = LlamaEngine(small_model, settings)
    try:
        await asyncio.wrap_future(engine.loaded)
        long = Request(
            RequestKind.COMPLETION,
            key="session",
            context=FimContext(path="a.py", prefix="def f():\n    return 1\n\n", suffix="\n"),
            params=GenerationParams(max_tokens=3000, time_budget_ms=600_000),
        )
        ahead = asyncio.ensure_future(engine.prefetch(long))
        while engine.stats().generated_tokens == 0:  # it is generating
            await asyncio.sleep(0.01)
        answer = await engine.complete(request("x = 1"))
        assert answer.usage.prompt_tokens > 0
        with pytest.raises(Cancelled):
            await ahead
        stats = engine.stats()
        assert stats.prefetch_yields == 1 and stats.prefetched == 0 and stats.completed == 1
        # Far fewer tokens than it was asked for: it stopped between two of them.
        assert stats.generated_tokens < 3000
        # With nothing else to do, a prefetch runs to its end.
        done = await engine.prefetch(request("y = 2"))
        assert done.usage.completion_tokens > 0 and engine.stats().prefetched == 1
    finally:
        engine.close()
        engine.join(30)


def session_request(key: str, prefix: str, max_tokens: int = 4) -> Request:
    return Request(
        RequestKind.COMPLETION,
        key=key,
        context=FimContext(path=f"{key}.py", prefix=prefix, suffix="\n"),
        params=GenerationParams(max_tokens=max_tokens, time_budget_ms=600_000),
    )


async def test_across_sessions_the_latest_goes_first_and_none_waits_two_turns(
    small_model: Path,
) -> None:
    # Two editor windows on one engine (the daemon): the one typing now is served first,
    # but a window another has already gone before is next, however fast the other types.
    engine = LlamaEngine(small_model, EngineSettings(n_ctx=4096, n_batch=64))
    answered: list[str] = []

    def submit(name: str, r: Request) -> asyncio.Future[object]:
        future = engine.submit(r)
        future.add_done_callback(lambda f: f.exception() is None and answered.append(name))
        return asyncio.wrap_future(future)

    async def busy_with(key: str) -> asyncio.Future[object]:
        running = engine.submit(session_request(key, "def f():\n    return 1\n\n", 3000))
        while engine.stats().generated_tokens == 0 or engine.stats().queued:
            await asyncio.sleep(0.01)
        return running

    try:
        await asyncio.wrap_future(engine.loaded)
        blocker = await busy_with("third")
        b = submit("b", session_request("b", "x = 1"))
        a = submit("a", session_request("a", "y = 2"))
        engine.cancel(blocker)
        await asyncio.gather(a, b)
        assert answered == ["a", "b"]  # the most recent first

        answered.clear()
        blocker = await busy_with("third")
        b = submit("b", session_request("b", "x = 3"))
        a = submit("a", session_request("a", "y = 4", 3000))
        engine.cancel(blocker)
        while engine.stats().queued != 1:  # a runs; b was passed over once
            await asyncio.sleep(0.01)
        a2 = submit("a2", session_request("a", "y = 45"))  # a types on: a is superseded
        await asyncio.gather(b, a2)
        with pytest.raises(Cancelled):
            await a
        assert answered == ["b", "a2"]  # b's turn came before a's newer request
    finally:
        engine.close()
        engine.join(30)


def fim(prefix: str, max_tokens: int = 4) -> Request:
    return Request(
        RequestKind.COMPLETION,
        key="session",
        context=FimContext(path="a.py", prefix=prefix, suffix="\n"),
        params=GenerationParams(max_tokens=max_tokens, time_budget_ms=600_000),
        prefix_tokens=256,
        extra_tokens=0,
    )


async def until(check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def test_background_work_waits_while_other_programs_need_the_cores(
    tiny_model: Path,
) -> None:
    machine = FakeMachine()
    engine = LlamaEngine(
        tiny_model, EngineSettings(n_ctx=512, n_batch=64), governor=machine.governor()
    )
    try:
        await asyncio.wrap_future(engine.loaded)
        # The engine idle, other programs on both cores: no core is free.
        machine.run(1.0, ours=0.0, others=2.0)
        engine.prefill(fim("def f(x):\n    y = x * 2\n    return "))
        await until(lambda: engine.stats().background_paused == 1)
        with pytest.raises(Cancelled):  # a guess is dropped, not kept waiting
            await engine.prefetch(fim("def g():\n    return "))
        stats = engine.stats()
        assert stats.prefilled_tokens == 0 and stats.background_paused == 2
        assert not stats.busy  # waiting for the machine, not for the engine
        assert stats.threads is not None and stats.threads.threads == 1
        assert stats.threads.contended
        # A request is not background work: it runs, on the core that is left.
        answer = await engine.complete(fim("x = "))
        assert answer.usage.completion_tokens > 0
        # The other programs end: the prefill runs, on every core again.
        engine.prefill(fim("def f(x):\n    y = x * 2\n    return "))
        machine.run(1.0, ours=0.0, others=0.0)
        await until(lambda: engine.stats().prefilled_tokens > 0)
        stats = engine.stats()
        assert stats.threads is not None and stats.threads.threads == 2
        assert not stats.threads.contended
    finally:
        engine.close()
        engine.join(30)


async def test_the_answer_does_not_depend_on_the_thread_count(tiny_model: Path) -> None:
    answers = []
    for threads in (1, 2):
        settings = EngineSettings(n_ctx=512, n_batch=64, n_threads=threads, adapt_to_load=False)
        engine = LlamaEngine(tiny_model, settings)
        try:
            await asyncio.wrap_future(engine.loaded)
            answers.append((await engine.complete(fim("def f(x):\n    return ", 12))).text)
            stats = engine.stats()
            assert stats.threads is not None and stats.threads.threads == threads
        finally:
            engine.close()
            engine.join(30)
    assert answers[0] == answers[1]
