"""One session's requests through the runtime: the routes its policy picks, tried in
order by one loop, with one small adapter per backend; every completion that comes back
goes through the one answer pipeline (backends/answer.py).

The runtime (runtime.py) is the host: engine, KV store, remote routes, the same for every
session. What a request may do (its routes, privacy, windows) comes from the caller with
each call, so what one session configures never changes another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from aiguilleur.backends import answer
from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.config.settings import Config
from aiguilleur.context.privacy import find_secret, is_private
from aiguilleur.errors import AnswerCut, BackendError, BackendUnavailable, BudgetRefused, Cancelled
from aiguilleur.routing.router import Selection, select_routes
from aiguilleur.routing.runtime import Runtime
from aiguilleur.types import (
    Answer,
    Backend,
    ChatMessage,
    Completion,
    ContextChunk,
    Quote,
    Request,
    RequestKind,
    Route,
    Usage,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class Caller(Protocol):
    """Whose request it is: its policy, read at each call (it changes when the user
    edits a settings file or the editor sends new settings), and where to tell what
    concerns that request (a route that failed, a budget spent)."""

    @property
    def policy(self) -> Config: ...

    def tell(self, message: str) -> None: ...


class FixedPolicy(msgspec.Struct, frozen=True):
    """A caller whose policy does not change (a one-shot command): told on stderr."""

    policy: Config

    def tell(self, message: str) -> None:
        log.warning("aiguilleur: %s", message)


class NoRoute(Exception):
    """No route could answer; the message lists each route and why."""

    def __init__(self, kind: RequestKind, reasons: list[tuple[str, str]]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{name}: {why}" for name, why in reasons) or "no routes configured"
        super().__init__(f"no route could answer this {kind.value.replace('_', ' ')} ({detail})")


class _Relay:
    """Passes streamed text on, remembering whether any was."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self._on_text = on_text
        self.sent = False

    def send(self, text: str) -> None:
        if self._on_text is not None:
            self.sent = True
            self._on_text(text)


def private_reason(path: str, texts: Iterable[str], policy: Config, found: str) -> str | None:
    """Why text from `path` must not leave the machine, if it must not: a private file, or
    a secret in `texts` (`found` says where, before the secret's kind)."""
    if is_private(path, policy.privacy.private):
        return f"{Path(path).name} is a private file"
    if policy.privacy.detect_secrets:
        for text in texts:
            if kind := find_secret(text):
                return f"{found} {kind}"
    return None


def _shaped(done: Completion, request: Request) -> Completion:
    """Every backend's completion through the one answer pipeline (backends/answer.py)."""
    return msgspec.structs.replace(
        done, text=answer.shape(done.text, request.context, request.params)
    )


def shareable(request: Request, policy: Config) -> Request:
    """`request` with only the chunks of other files (repository block, ring) that may
    leave the machine: none of a private file, none holding a secret. The cursor's own
    text was checked when the routes were chosen."""
    ctx = request.context

    def may_leave(chunk: ContextChunk) -> bool:
        return private_reason(chunk.path, (chunk.text,), policy, "") is None

    kept = msgspec.structs.replace(
        ctx,
        repository=tuple(c for c in ctx.repository if may_leave(c)),
        extra=tuple(c for c in ctx.extra if may_leave(c)),
    )
    return msgspec.structs.replace(request, context=kept)


def for_route(request: Request, route: Route) -> Request:
    """`request` under a local route's own settings (`max_tokens`, `temperature`), as the
    remote routes apply theirs."""
    gen = request.params
    params = msgspec.structs.replace(
        gen,
        max_tokens=route.max_tokens or gen.max_tokens,
        temperature=gen.temperature if route.temperature is None else route.temperature,
    )
    return msgspec.structs.replace(request, params=params)


class SessionRoutes:
    """One session's requests through the shared runtime, under that session's policy."""

    def __init__(self, runtime: Runtime, caller: Caller) -> None:
        self.runtime = runtime
        self._caller = caller

    @property
    def policy(self) -> Config:
        return self._caller.policy

    def _routes(
        self, kind: RequestKind, private: str | None, assume_local: bool = False
    ) -> Selection:
        now = time.time()
        available = self.runtime.availability(now)
        if assume_local:
            available = msgspec.structs.replace(available, local=True)
        return select_routes(kind, self.policy, available, private=private, now=now)

    def _completion_routes(self, request: Request, assume_local: bool = False) -> list[Route]:
        ctx = request.context
        where = "the text around the cursor contains a"
        private = private_reason(ctx.path, (ctx.prefix, ctx.suffix), self.policy, where)
        return list(self._routes(request.kind, private, assume_local).routes)

    def local_first(self, request: Request) -> bool:
        """Whether the local engine is the first route for `request` under this policy,
        loaded or not: only then is work done ahead of the user in it (a file's prefill
        on open), for a remote route would never use it."""
        routes = self._completion_routes(request, assume_local=True)
        return bool(routes) and routes[0].backend is Backend.LOCAL

    async def _first_answer(
        self,
        routes: list[Route],
        answer_on: Callable[[Route], Awaitable[T]],
        reasons: list[tuple[str, str]],
    ) -> T | None:
        """The route loop: the first route's answer, falling back along `routes` when a
        route cannot answer (the reason is added to `reasons`, and the caller is told
        of a failed remote route); None when none could. A cancellation, or an answer
        cut after part of it reached the user, ends it."""
        for route in routes:
            try:
                return await answer_on(route)
            except Cancelled:
                raise
            except BackendUnavailable as error:
                log.info("route.unavailable route=%s error=%s", route.name, error)
                reasons.append((route.name, str(error)))
            except (BackendError, BudgetRefused) as error:
                log.info("route.failed route=%s error=%s", route.name, type(error).__name__)
                remote = self.runtime.remote if route.backend.remote else None
                if remote is not None and (told := remote.note_failure(route, error, time.time())):
                    self._caller.tell(told)
                reasons.append((route.name, str(error)))
        return None

    async def complete(self, request: Request) -> Completion | None:
        """The first of the caller's routes to answer, falling back along them; None
        when no route can answer."""
        runtime = self.runtime

        async def complete_on(route: Route) -> Completion:
            if route.backend is Backend.LOCAL:
                done = await runtime.local_engine().complete(for_route(request, route))
                return msgspec.structs.replace(done, route=route.name)
            return await runtime.remote_routes().complete(route, shareable(request, self.policy))

        done = await self._first_answer(self._completion_routes(request), complete_on, [])
        return None if done is None else _shaped(done, request)

    async def prefetch(self, request: Request) -> Completion | None:
        """The completion of `request` ahead of time, when the engine is idle: from the
        local engine only, and only when it is the first route for this request, so that
        a guess never sends code anywhere nor costs anything. None when it gave way."""
        local = self._local_first(request)
        if local is None:
            return None
        engine, route = local
        try:
            done = await engine.prefetch(for_route(request, route))
        except (Cancelled, BackendUnavailable):
            return None
        return _shaped(msgspec.structs.replace(done, route=route.name), request)

    def _local_first(self, request: Request) -> tuple[LlamaEngine, Route] | None:
        """The local engine and its route, when that route is the first for `request`
        (background work for it never sends code anywhere nor costs anything)."""
        try:
            engine = self.runtime.local_engine()
        except BackendUnavailable:
            return None
        routes = self._completion_routes(request)
        if not routes or routes[0].backend is not Backend.LOCAL:
            return None
        return engine, routes[0]

    async def prefill(self, request: Request) -> bool:
        """Evaluate the head of `request`'s prompt (up to the cursor line) in the local
        engine while it is idle, when the engine is the first route for this request
        (a remote route has no cache of ours to warm); whether all of it is now in the
        engine's cache. False when a request or another prefill came first."""
        local = self._local_first(request)
        if local is None:
            return False
        engine, route = local
        future = asyncio.wrap_future(engine.prefill(for_route(request, route)))
        # A cancelled prefill is an answer here ("not done"), not this task's cancellation.
        await asyncio.wait([future])
        if future.cancelled() or future.exception() is not None:
            return False
        usage = future.result().usage
        return usage.reused_tokens + usage.evaluated_tokens >= usage.prompt_tokens

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """A chat-style answer (code action, chat), falling back along `kind`'s routes
        in the caller's policy. Raises NoRoute, whose message says why each route was
        passed over."""
        texts = (m.content for m in messages)
        private = private_reason(path, texts, self.policy, "the code sent would contain a")
        selection = self._routes(kind, private)
        runtime = self.runtime

        async def ask_on(route: Route) -> Answer:
            if route.backend is Backend.LOCAL:
                return await self._local_ask(route, messages, max_tokens, on_text)
            relay = _Relay(on_text)
            remote = runtime.remote_routes()
            try:
                return await remote.ask(route, kind.value, messages, max_tokens, relay.send)
            except (BackendError, BudgetRefused) as error:
                if relay.sent:
                    # Part of this answer is already in the user's document: another
                    # route's answer cannot follow it.
                    raise AnswerCut(str(error), route.name, route.model) from error
                raise

        reasons = list(selection.skipped)
        answer = await self._first_answer(list(selection.routes), ask_on, reasons)
        if answer is None:
            raise NoRoute(kind, reasons)
        return answer

    def paid_first(self, kind: RequestKind, path: str) -> bool:
        """Whether the route that would take a request of `kind` about `path` is a paid
        one (cheap: a feature asks before it builds what a quote needs)."""
        private = private_reason(path, (), self.policy, "")
        routes = self._routes(kind, private).routes
        return bool(routes) and routes[0].backend is Backend.OPENROUTER

    async def quote(
        self, kind: RequestKind, path: str, messages: list[ChatMessage], max_tokens: int
    ) -> Quote | None:
        """What `messages` would cost through the route that would take them now, when it
        is a paid one (None: local, a server, no route, or a price not known yet)."""
        texts = (m.content for m in messages)
        private = private_reason(path, texts, self.policy, "the code sent would contain a")
        routes = self._routes(kind, private).routes
        if not routes or self.runtime.remote is None:
            return None
        route = routes[0]
        price = await self.runtime.remote.quote(route, kind.value, messages, max_tokens)
        if price is None:
            return None
        return Quote(route.name, route.model, price.label(), price.estimate_usd, price.bound_usd)

    async def _local_ask(
        self,
        route: Route,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None,
    ) -> Answer:
        engine = self.runtime.local_engine()
        loop = asyncio.get_running_loop()

        def emit(text: str) -> None:  # called on the engine thread
            if on_text is not None:
                loop.call_soon_threadsafe(on_text, text)

        result = await engine.chat(messages, route.max_tokens or max_tokens, emit)
        usage = Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            generation_ms=result.generation_ms,
        )
        info = self.runtime.model_info
        model = info.name if info else "local"
        return Answer(result.text, route.name, model, usage, result.finish_reason)
