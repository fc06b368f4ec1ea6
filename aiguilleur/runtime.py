"""The runtime: owns the engine (and later the stores and the ledger).

One runtime serves every LSP session of a process; nothing here knows LSP, so the
same object can later live in a shared per-user daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings
from aiguilleur.backends.llama_state import kv_namespace
from aiguilleur.backends.models import ModelChoice, discover
from aiguilleur.backends.prompts import render
from aiguilleur.cache.kv import KVStateStore, KVStoreStats
from aiguilleur.config import cache_dir, data_dir, models_dir
from aiguilleur.errors import (
    AnswerCut,
    BackendError,
    BackendUnavailable,
    BudgetRefused,
    Cancelled,
)
from aiguilleur.languages import language_of
from aiguilleur.privacy import find_secret, is_private
from aiguilleur.remote import RemoteRoutes
from aiguilleur.router import Availability, select_routes
from aiguilleur.settings import Config
from aiguilleur.types import (
    ActionRequest,
    Answer,
    Backend,
    ChatMessage,
    Completion,
    ModelInfo,
    Request,
    RequestKind,
    Route,
    Usage,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
LoadCallback = Callable[[ModelInfo | None, str | None], None]
ProblemCallback = Callable[[str], None]


def engine_settings(config: Config) -> EngineSettings:
    return EngineSettings(
        n_ctx=config.local.n_ctx,
        n_batch=config.local.n_batch,
        n_threads=config.local.n_threads,
        reuse_prefix=config.local.reuse_prefix,
        speculative=config.local.speculative,
    )


def kv_store(
    config: Config, model: Path, on_problem: ProblemCallback | None
) -> KVStateStore | None:
    """The KV state store for `model`, or None when both tiers are configured off."""
    ram = max(0, config.cache.kv_ram_mb) << 20
    disk = max(0, config.cache.kv_disk_mb) << 20
    if not ram and not disk:
        return None
    directory = cache_dir(config) / "kv" if disk else None
    return KVStateStore(kv_namespace(model), directory, ram, disk, on_problem)


class _Relay:
    """Passes streamed text on, remembering whether any was."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self._on_text = on_text
        self.sent = False

    def send(self, text: str) -> None:
        if self._on_text is not None:
            self.sent = True
            self._on_text(text)


class NoRoute(Exception):
    """No route could answer; the message lists each route and why."""

    def __init__(self, kind: RequestKind, reasons: list[tuple[str, str]]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{name}: {why}" for name, why in reasons) or "no routes configured"
        super().__init__(f"no route could answer this {kind.value.replace('_', ' ')} ({detail})")


def _has_remote_routes(config: Config) -> bool:
    routes = config.routes
    every = (*routes.completion, *routes.code_action, *routes.chat)
    return any(r.backend.remote for r in every)


class Runtime:
    def __init__(self, config: Config, on_problem: ProblemCallback | None = None) -> None:
        self.config = config
        self.model: ModelChoice | None = None
        self.engine: LlamaEngine | None = None
        # A file opened before the engine exists (the editor sends didOpen right after
        # `initialized`, while the engine starts): prefilled once it does.
        self._early_prefill: Request | None = None
        self.store: KVStateStore | None = None
        self.model_info: ModelInfo | None = None
        self.load_error: str | None = None
        # Told about trouble worth a message to every user of this runtime (e.g. the KV
        # cache dir is full); kept, for the windows that connect later.
        self.on_problem = on_problem
        self.problems: list[str] = []
        self.remote: RemoteRoutes | None = None

    async def start_remote(self) -> None:
        """Keys, clients and the spend ledger for the remote routes; prices and key
        limits are fetched in the background. Call on the event loop."""
        old, self.remote = self.remote, None
        if old is not None:
            await old.close()
        if not self.config.keys and not _has_remote_routes(self.config):
            return
        remote = await asyncio.to_thread(
            RemoteRoutes,
            self.config,
            data_dir() / "ledger.db",
            cache_dir(self.config) / "openrouter-models.json",
            self._say,
        )
        self.remote = remote
        await remote.start()

    def _say(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)
        if self.on_problem is not None:
            self.on_problem(message)

    def private_reason(self, request: Request, policy: Config) -> str | None:
        """Why this request must not leave the machine, if it must not."""
        ctx = request.context
        if is_private(ctx.path, policy.privacy.private):
            return f"{Path(ctx.path).name} is a private file"
        if policy.privacy.detect_secrets:
            kind = find_secret(ctx.prefix) or find_secret(ctx.suffix)
            if kind is not None:
                return f"the text around the cursor contains a {kind}"
        return None

    def start(self, on_loaded: LoadCallback | None = None) -> ModelChoice:
        """Find the model and start loading it. Blocking (scans directories): not on the loop."""
        choice = discover(
            self.config.local.model, models_dir(self.config), self.config.local.search_common_places
        )
        self.model = choice
        log.info("model.choice path=%s how=%s", choice.path, choice.how)
        if choice.path is None:
            self.load_error = choice.problem
            if on_loaded:
                on_loaded(None, choice.problem)
            return choice

        def loaded(info: ModelInfo | None, error: str | None) -> None:
            self.model_info, self.load_error = info, error
            if on_loaded:
                on_loaded(info, error)

        path = Path(choice.path)
        try:
            self.store = kv_store(self.config, path, self._say)
        except OSError as error:  # the model file vanished between discovery and here
            log.warning("kv.store_unavailable error=%s", error)
        self.engine = LlamaEngine(path, engine_settings(self.config), loaded, store=self.store)
        if self._early_prefill is not None:
            self.engine.prefill(self._early_prefill)
            self._early_prefill = None
        return choice

    def reconfigure(self, config: Config, on_loaded: LoadCallback | None = None) -> bool:
        """Apply new settings; restart the engine if the model or its context changed."""
        old = self.config
        self.config = config
        if old.local == config.local and old.cache == config.cache:
            return False
        self.close()
        self.engine, self.model_info, self.load_error = None, None, None
        self.start(on_loaded)
        return True

    def availability(self, now: float = 0.0) -> Availability:
        ready = self.engine is not None and self.load_error is None
        name = self.model_info.name if self.model_info else ""
        remote = self.remote
        if remote is None:
            return Availability(local=ready, local_model=name)
        return Availability(
            local=ready,
            local_model=name,
            keys=remote.usable_keys(),
            exhausted=remote.exhausted_keys(now),
            cooling=dict(remote.cooling),
        )

    def _routes(self, request: Request, policy: Config) -> list[Route]:
        now = time.time()
        selection = select_routes(
            request.kind,
            policy,
            self.availability(now),
            private=self.private_reason(request, policy),
            now=now,
        )
        return list(selection.routes)

    async def _first_answer(
        self,
        routes: list[Route],
        answer_on: Callable[[Route], Awaitable[T]],
        reasons: list[tuple[str, str]],
        caller: Caller,
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
                remote = self.remote if route.backend.remote else None
                if remote is not None and (told := remote.note_failure(route, error, time.time())):
                    caller.tell(told)
                reasons.append((route.name, str(error)))
        return None

    def _engine(self) -> LlamaEngine:
        if self.engine is None or self.load_error is not None:
            raise BackendUnavailable("no local model is loaded")
        return self.engine

    def _remote(self) -> RemoteRoutes:
        if self.remote is None:
            raise BackendUnavailable("the remote routes are not set up")
        return self.remote

    async def complete(self, request: Request, caller: Caller) -> Completion | None:
        """The first of the caller's routes to answer, falling back along them; None
        when no route can answer."""

        async def complete_on(route: Route) -> Completion:
            if route.backend is Backend.LOCAL:
                return await self._engine().complete(request)
            return await self._remote().complete(route, request)

        routes = self._routes(request, caller.policy)
        return await self._first_answer(routes, complete_on, [], caller)

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        caller: Caller,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """A chat-style answer (code action, chat), falling back along `kind`'s routes
        in the caller's policy. Raises NoRoute, whose message says why each route was
        passed over."""
        policy = caller.policy
        now = time.time()
        private = None
        if is_private(path, policy.privacy.private):
            private = f"{Path(path).name} is a private file"
        elif policy.privacy.detect_secrets:
            for m in messages:
                if found := find_secret(m.content):
                    private = f"the code sent would contain a {found}"
                    break
        selection = select_routes(kind, policy, self.availability(now), private=private, now=now)

        async def ask_on(route: Route) -> Answer:
            if route.backend is Backend.LOCAL:
                return await self._local_ask(route, messages, max_tokens, on_text)
            relay = _Relay(on_text)
            try:
                return await self._remote().ask(route, kind.value, messages, max_tokens, relay.send)
            except (BackendError, BudgetRefused) as error:
                if relay.sent:
                    # Part of this answer is already in the user's document: another
                    # route's answer cannot follow it.
                    raise AnswerCut(str(error), route.name, route.model) from error
                raise

        reasons = list(selection.skipped)
        answer = await self._first_answer(list(selection.routes), ask_on, reasons, caller)
        if answer is None:
            raise NoRoute(kind, reasons)
        return answer

    async def _local_ask(
        self,
        route: Route,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None,
    ) -> Answer:
        engine = self._engine()
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
        model = self.model_info.name if self.model_info else "local"
        return Answer(result.text, route.name, model, usage, result.finish_reason)

    async def code_action(self, request: ActionRequest, caller: Caller) -> Answer:
        """The model's answer for a code action, through the caller's code_action routes."""
        cfg = caller.policy
        messages = render(
            request.action,
            {k: (v.system, v.user) for k, v in cfg.prompts.items()},
            language=language_of(request.path) or "code",
            path=request.path,
            code=request.code,
            before=request.before,
            after=request.after,
            instruction=request.instruction,
            diagnostics="\n".join(f"- {m}" for m in request.diagnostics),
            test_path=request.test_path,
            module=request.module,
            framework=request.framework,
        )
        return await self.ask(
            RequestKind.CODE_ACTION, request.path, messages, cfg.actions.max_tokens, caller
        )

    async def chat(
        self,
        about: str,
        messages: list[ChatMessage],
        on_text: Callable[[str], None],
        caller: Caller,
    ) -> Answer:
        """A chat answer, streamed through `on_text`, through the caller's chat routes."""
        max_tokens = caller.policy.chat.max_tokens
        return await self.ask(RequestKind.CHAT, about, messages, max_tokens, caller, on_text)

    async def prefetch(self, request: Request, caller: Caller) -> Completion | None:
        """The completion of `request` ahead of time, when the engine is idle: from the
        local engine only, and only when it is the first route for this request, so that
        a guess never sends code anywhere nor costs anything. None when it gave way."""
        engine = self.engine
        if engine is None or self.load_error is not None:
            return None
        routes = self._routes(request, caller.policy)
        if not routes or routes[0].backend is not Backend.LOCAL:
            return None
        try:
            return await engine.prefetch(request)
        except (Cancelled, BackendUnavailable):
            return None

    def prefill(self, request: Request) -> None:
        """Warm the KV cache for a document the user is likely to type in next."""
        if self.engine is None:
            self._early_prefill = request
        elif self.load_error is None:
            self.engine.prefill(request)

    def kv_stats(self) -> KVStoreStats | None:
        return self.store.stats() if self.store is not None else None

    def stop(self) -> None:
        """Stop taking work; the engine saves its state in the background. Non-blocking."""
        if self.engine is not None:
            self.engine.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the engine (it saves its live state) and write pending states to disk.
        Blocking: call it from a thread, not the event loop."""
        engine, store = self.engine, self.store
        self.store = None
        if engine is not None:
            engine.close()
            engine.join(timeout)
        if store is not None:
            store.close(timeout)


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


class SessionRoutes:
    """One session's requests through the shared runtime (engine, stores, remote
    routes), under that session's policy: its routes, privacy, windows and prompts
    travel with each call, so what one session configures never changes another's."""

    def __init__(self, runtime: Runtime, caller: Caller) -> None:
        self.runtime = runtime
        self._caller = caller

    @property
    def policy(self) -> Config:
        return self._caller.policy

    async def complete(self, request: Request) -> Completion | None:
        return await self.runtime.complete(request, self._caller)

    async def prefetch(self, request: Request) -> Completion | None:
        return await self.runtime.prefetch(request, self._caller)

    async def code_action(self, request: ActionRequest) -> Answer:
        return await self.runtime.code_action(request, self._caller)

    async def chat(
        self, about: str, messages: list[ChatMessage], on_text: Callable[[str], None]
    ) -> Answer:
        return await self.runtime.chat(about, messages, on_text, self._caller)
