"""The remote routes: one OpenRouter client and Spender per key, prices, and what the
router needs to know about them (which keys are usable, which are spent, which routes
are rate-limited). Owned by the runtime; knows nothing of LSP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from aiguilleur.backends.remote_fim import (
    RawFimPrompt,
    chat_fim_messages,
    fill_from_chat,
)
from aiguilleur.config.loading import cache_dir
from aiguilleur.config.settings import Config
from aiguilleur.errors import (
    BackendUnavailable,
    BudgetRefused,
    OutOfCredit,
    RateLimited,
    Rejected,
    StreamFailed,
    Transient,
)
from aiguilleur.remote.estimate import Price
from aiguilleur.remote.fitting import MIN_PREFIX_TOKENS, bound, cut, raw_prompt, within_budget
from aiguilleur.remote.keys import KeyProblem, read_key
from aiguilleur.remote.ledger import Budget, SpendLedger
from aiguilleur.remote.llama_server import server_root
from aiguilleur.remote.openai_compat import OpenAICompatClient, WireResult
from aiguilleur.remote.openrouter import (
    OpenRouterClient,
    provider_preferences,
)
from aiguilleur.remote.prices import PriceBook
from aiguilleur.remote.responses import CachedAnswer, ResponseCache, cache_key
from aiguilleur.remote.shared_server import SharedServer
from aiguilleur.remote.spending import Spender
from aiguilleur.tasks import TaskSet
from aiguilleur.types import (
    Answer,
    Backend,
    ChatMessage,
    Completion,
    FimContext,
    GenerationParams,
    Request,
    Route,
    Usage,
)

log = logging.getLogger(__name__)

# A key refused for budget or credit is skipped this long before it is tried again.
EXHAUSTED_S = 300.0
FIRST_REFRESH_WAIT_S = 5.0
# A menu waits at most this long for prices on their way (just after start).
QUOTE_PRICES_WAIT_S = 1.0
# Closing (new settings) waits this long for costs still being asked after the fact.
SETTLE_WAIT_S = 10.0
# A shared server's chat answer may take this long to start, by default.
CHAT_FIRST_TOKEN_S = 30.0
# A chat or code action waits this long for a budget held by requests in flight; a
# completion, half its time budget.
CHAT_BUSY_WAIT_S = 5.0
# A completion refused because other windows' answers settled meanwhile is asked again
# (cut to what is left) this many times.
_BUDGET_TRIES = 2


def _fill(text: str, ctx: FimContext, raw: bool) -> str:
    """What belongs in the hole: a raw fill-in-the-middle answer as it came, a chat
    model's fitted to the hole (the route loop's answer pipeline does the rest)."""
    return text if raw else fill_from_chat(text, ctx)


class RemoteRoutes:
    def __init__(
        self,
        config: Config,
        ledger_path: Path,
        prices_file: Path,
        on_message: Callable[[str], None],
    ) -> None:
        self.config = config
        self.ledger = SpendLedger(ledger_path)
        self.ledger.orphans()
        self.price_book = PriceBook(prices_file)
        self._say = on_message
        self._told: set[str] = set()
        self.spenders: dict[str, Spender] = {}
        self.exhausted: dict[str, float] = {}  # key -> until (epoch)
        self.cooling: dict[str, float] = {}  # route -> until (epoch)
        self._compat: dict[tuple[str, str], OpenAICompatClient] = {}
        self._tasks = TaskSet()
        c = config.cache
        self.responses = (
            ResponseCache(
                cache_dir(config) / "responses", c.responses_mb << 20, c.responses_ttl_hours * 3600
            )
            if c.responses_mb > 0
            else None
        )
        self._servers: dict[tuple[str, str], SharedServer] = {}
        # Keys of shared servers (their secret only says who may use the server).
        self.server_keys: dict[str, str] = {}
        every = config.routes.every()
        server_labels = {r.key for r in every if r.backend.shared_server and r.key}
        paid_labels = {r.key for r in every if r.backend is Backend.OPENROUTER}
        for label in sorted(server_labels & paid_labels):
            self.tell(
                f"key '{label}' is used by an OpenRouter route and by a shared server's: an "
                "OpenRouter key is never sent to another server. Give the server its own "
                "[keys.<label>] in your user config."
            )
        for label, key in config.keys.items():
            try:
                secret = read_key(label, key)
            except KeyProblem as problem:
                if self._uses(label):
                    self.tell(str(problem))
                continue
            if label in server_labels and label not in paid_labels:
                self.server_keys[label] = secret
                continue
            client = OpenRouterClient(secret, base_url=key.base_url, label=label)
            budget = Budget(key.daily, key.weekly, key.monthly, key.total)
            self.spenders[label] = Spender(client, self.ledger, budget, self.price_book)

    def _uses(self, label: str) -> bool:
        return any(r.key == label for r in self.config.routes.every())

    def _server(self, route: Route) -> SharedServer:
        """The llama-server of `route`, shared by the routes that name it with one key."""
        at = (server_root(route.base_url), route.key)
        server = self._servers.get(at)
        if server is None:
            key = self.server_keys.get(route.key)
            server = self._servers[at] = SharedServer(route.base_url, key, f"llama-server {at[0]}")
        return server

    def _compat_client(self, route: Route) -> OpenAICompatClient:
        at = (route.base_url, route.key)
        client = self._compat.get(at)
        if client is None:
            key = self.server_keys.get(route.key)
            client = self._compat[at] = OpenAICompatClient(route.base_url, key)
        return client

    def tell(self, message: str) -> None:
        """Tell the user once per distinct message."""
        if message not in self._told:
            self._told.add(message)
            self._say(message)

    # -- background: prices and key info ----------------------------------------------

    async def start(self) -> None:
        if not self.spenders:
            self.price_book.refreshed.set()
            return
        await self.price_book.load_cached()
        for spender in self.spenders.values():
            await spender.settle_orphans()
        clients = {label: s.client for label, s in self.spenders.items()}
        self._tasks.spawn(self.price_book.keep_fresh(clients), "refresh prices and key limits")

    # -- answering ----------------------------------------------------------------------

    def usable_keys(self) -> frozenset[str]:
        return frozenset(self.spenders) | frozenset(self.server_keys)

    def exhausted_keys(self, now: float) -> frozenset[str]:
        return frozenset(k for k, until in self.exhausted.items() if until > now)

    async def _prices_ready(self, route: Route) -> None:
        """The first request after start: prices (and the key's limit) are on their way."""
        if route.backend is Backend.OPENROUTER:
            await self.price_book.ready(FIRST_REFRESH_WAIT_S)

    async def complete(self, route: Route, request: Request, *, tries: int = 0) -> Completion:
        if route.backend is Backend.LLAMA_SERVER:
            # The request as the embedded engine gets it, with the chunks of other files
            # the route loop let through (a shared server is the user's own machine).
            wait = _first_token_s(route, request.params.time_budget_ms)
            return await self._server(route).complete(route, request, wait)
        await self._prices_ready(route)
        # The cursor's file only (never the chunks of other files), fitted to the route.
        ctx = cut(request, request.prefix_tokens)
        gen = request.params
        max_tokens = route.max_tokens or gen.max_tokens
        temperature = route.temperature if route.temperature is not None else gen.temperature
        started = time.perf_counter()
        if route.backend is Backend.OPENROUTER:
            # The budget's last cents buy a shorter prompt.
            spender = self.spenders[route.key]
            ctx = await within_budget(spender, route, request, ctx, max_tokens) or ctx
        raw = raw_prompt(route, ctx)
        messages = chat_fim_messages(ctx)
        key = None
        if self.responses is not None and (
            temperature == 0 or self.config.cache.responses_any_temperature
        ):
            # (A prompt cut to the budget's last cents is kept under its own text: its
            # answer never stands for the whole prompt's.)
            key = cache_key(
                backend=route.backend,
                server=route.base_url
                or (self.config.keys[route.key].base_url if route.key else ""),
                model=route.model,
                prompt=raw.prompt if raw is not None else [m.content for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
            )
            hit = await asyncio.to_thread(self.responses.get, key)  # disk: off the loop
            if hit is not None:
                if route.key:
                    await asyncio.to_thread(
                        self.ledger.cache_hit,
                        route.key,
                        route=route.name,
                        model=hit.model_used,
                        feature=request.kind.value,
                    )
                text = _fill(hit.text, ctx, raw=raw is not None)
                usage = Usage(
                    prompt_tokens=hit.prompt_tokens,
                    completion_tokens=hit.completion_tokens,
                    generation_ms=(time.perf_counter() - started) * 1000,
                    cached=True,
                )
                return Completion(
                    text, usage, route=route.name, model=hit.model_used, backend=route.backend
                )
        try:
            result = await self._answer(route, request, ctx, raw, messages, max_tokens, temperature)
        except BudgetRefused as refused:
            if refused.busy or route.backend is not Backend.OPENROUTER:
                raise
            if tries < _BUDGET_TRIES:
                # Other windows' answers settled between the look at the budget and the
                # reservation: what is left may still buy a shorter prompt.
                return await self.complete(route, request, tries=tries + 1)
            # Still too dear: this request goes elsewhere; the key is held for spent only
            # when what is left does not buy even the shortest prompt worth sending.
            shortest = cut(request, MIN_PREFIX_TOKENS)
            raise refused.with_smallest(
                await bound(self.spenders[route.key], route, request, shortest, max_tokens)
            ) from None
        if key is not None and self.responses is not None:
            u = result.usage
            await asyncio.to_thread(
                self.responses.put,
                key,
                CachedAnswer(
                    result.text,
                    result.model_used,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cost_usd or 0.0,
                ),
            )
        return self._completion(route, result, ctx, gen, started, raw=raw is not None)

    async def _answer(
        self,
        route: Route,
        request: Request,
        ctx: FimContext,
        raw: RawFimPrompt | None,
        messages: list[ChatMessage],
        max_tokens: int,
        temperature: float,
    ) -> WireResult:
        wait = request.params.time_budget_ms / 2000  # for a budget held by others
        if raw is None:
            return await self._chat(
                route,
                request.kind.value,
                messages,
                max_tokens,
                temperature,
                busy_wait_s=wait,
                run_to_end=True,
            )
        if route.backend is Backend.OPENAI_COMPATIBLE:
            client = self._compat_client(route)
            # No second try: a server too slow for this keystroke is passed over now.
            return await client.complete(
                route.model,
                raw.prompt,
                max_tokens=max_tokens,
                stop=raw.stop,
                temperature=temperature,
                timeout=_first_token_s(route, request.params.time_budget_ms),
            )
        spender = self.spenders[route.key]
        return await self._retry_once(
            lambda: spender.complete(
                route.model,
                raw.prompt,
                max_tokens=max_tokens,
                feature=request.kind.value,
                route=route.name,
                stop=raw.stop,
                temperature=temperature,
                max_price=route.max_price,
                extra=provider_preferences(route.allow_data_collection),
                busy_wait_s=wait,
            )
        )

    async def _chat(
        self,
        route: Route,
        feature: str,
        messages: list[ChatMessage],
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
        busy_wait_s: float = CHAT_BUSY_WAIT_S,
        run_to_end: bool = False,
    ) -> WireResult:
        """A chat request through `route`: an openai-compatible server's, or through the
        route key's Spender (a budget reserved before, settled after; `run_to_end`: a
        completion's, which a newer keystroke does not stop once sent)."""
        if route.backend is Backend.LLAMA_SERVER:
            server = self._server(route)
            return await server.chat(
                route,
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                first_token_s=_first_token_s(route, None),
                on_text=on_text,
            )
        if route.backend is Backend.OPENAI_COMPATIBLE:
            return await self._compat_client(route).chat(
                route.model,
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                on_text=on_text,
                timeout=_first_token_s(route, None),
            )
        spender = self.spenders[route.key]
        return await self._retry_once(
            lambda: spender.chat(
                route.model,
                messages,
                max_tokens=max_tokens,
                feature=feature,
                route=route.name,
                temperature=temperature,
                max_price=route.max_price,
                extra=provider_preferences(route.allow_data_collection),
                on_text=on_text,
                busy_wait_s=busy_wait_s,
                run_to_end=run_to_end,
            )
        )

    async def ask(
        self,
        route: Route,
        kind: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """A chat-style answer (code actions, chat) through `route`."""
        await self._prices_ready(route)
        max_tokens = route.max_tokens or max_tokens
        temperature = route.temperature if route.temperature is not None else 0.0
        started = time.perf_counter()
        result = await self._chat(route, kind, messages, max_tokens, temperature, on_text)
        model = result.model_used or route.model
        return Answer(result.text, route.name, model, _usage(result, started), result.finish_reason)

    async def quote(
        self, route: Route, feature: str, messages: list[ChatMessage], max_tokens: int
    ) -> Price | None:
        """What `messages` would cost through `route` (None: not a paid route, or a model
        whose price is unknown). Just after start, waits briefly for prices on their way:
        a price is told before the first request too."""
        spender = self.spenders.get(route.key) if route.backend is Backend.OPENROUTER else None
        if spender is None:
            return None
        await self.price_book.ready(QUOTE_PRICES_WAIT_S)
        try:
            return await spender.price(
                route.model,
                [m.content for m in messages],
                route.max_tokens or max_tokens,
                feature=feature,
                max_price=route.max_price,
            )
        except Rejected:
            return None

    async def _retry_once(self, send: Callable[[], Awaitable[WireResult]]) -> WireResult:
        """408/5xx/timeouts: one more try after a pause, then the caller falls back."""
        try:
            return await send()
        except Transient:
            await asyncio.sleep(0.5)
            return await send()

    def _completion(
        self,
        route: Route,
        result: WireResult,
        ctx: FimContext,
        gen: GenerationParams,
        started: float,
        raw: bool,
    ) -> Completion:
        text = _fill(result.text, ctx, raw=raw)
        usage = _usage(result, started)
        usage = msgspec.structs.replace(usage, evaluated_tokens=usage.prompt_tokens)
        model = result.model_used or route.model
        return Completion(text, usage, route=route.name, model=model, backend=route.backend)

    def note_failure(self, route: Route, error: Exception, now: float) -> str | None:
        """Remember what the router must skip next time; what to tell the user whose
        request it was (None when there is nothing to say)."""
        if isinstance(error, RateLimited):
            wait = error.retry_after if error.retry_after is not None else 30.0
            self.cooling[route.name] = now + wait
            log.info("route.rate_limited route=%s wait=%.0f", route.name, wait)
            return None
        if route.backend.shared_server and isinstance(
            error, Transient | StreamFailed | BackendUnavailable
        ):
            # Down, restarting, or too slow for the user's flow: the next route answers
            # meanwhile, and the server is tried again after a rest.
            self.cooling[route.name] = now + route.retry_s
            log.info("route.server_resting route=%s error=%s", route.name, type(error).__name__)
            return (
                f"route '{route.name}': the shared server {route.base_url} did not answer "
                f"in time or failed ({error}); using the next route, and trying it again "
                f"in {route.retry_s:.0f} s"
            )
        if isinstance(error, BudgetRefused) and not error.exhausted:
            # Requests in flight fill the budget, or this request is dearer than what is
            # left and a shorter one is not: this request goes elsewhere, the key stays
            # usable (marking it spent sent every window to the fallback).
            log.info("route.budget_busy route=%s key=%s", route.name, route.key)
            why = "is held by requests still in flight" if error.busy else "is almost spent"
            return (
                f"key '{route.key}': its {error.period} budget {why}, so a request went to "
                "the next route; the key is not spent"
            )
        if route.key and isinstance(error, BudgetRefused | OutOfCredit):
            self.exhausted[route.key] = now + EXHAUSTED_S
            return (
                f"{error}. Using the next route for now. Budgets are in [keys."
                f"{route.key}] of your user config."
            )
        return f"route '{route.name}' failed: {error}"

    async def close(self) -> None:
        self._tasks.cancel_all()
        for s in self.spenders.values():
            await s.drain(SETTLE_WAIT_S)
        for s in self.spenders.values():
            await s.client.aclose()
        for c in self._compat.values():
            await c.aclose()
        for server in self._servers.values():
            await server.aclose()
        self.ledger.close()
        if self.responses is not None:
            self.responses.close()


def _first_token_s(route: Route, time_budget_ms: int | None) -> float:
    """How long a shared server may take to send anything: the route's own limit, else a
    completion's time budget (a later suggestion is no use), else a chat's patience."""
    if route.first_token_ms is not None:
        return route.first_token_ms / 1000
    return time_budget_ms / 1000 if time_budget_ms is not None else CHAT_FIRST_TOKEN_S


def _usage(result: WireResult, started: float) -> Usage:
    u = result.usage
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        generation_ms=(time.perf_counter() - started) * 1000,
        cost_usd=u.cost_usd or 0.0,
    )
