"""Paid requests under a budget: reserve the bound, send, settle the real cost.

One `Spender` per OpenRouter key. It never sends a request whose price is unknown (see
estimate.py for the bound it reserves and the estimate it shows), and never lets a
request through that the ledger refuses; a budget held only by requests in flight is
waited for, briefly, before the request is refused as busy. After the answer it
settles with `usage.cost`, or, when the answer broke off, with what OpenRouter's
generation endpoint says it cost (asked in the background); if that stays unknown, the
reservation stays spent. A broken answer (see StreamFailed) is settled the same way and
re-raised: it is never used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiguilleur.errors import (
    BudgetRefused,
    OutOfCredit,
    RateLimited,
    Rejected,
    StreamFailed,
    Transient,
)
from aiguilleur.remote.estimate import Price, counted_tokens, message_texts, price_request
from aiguilleur.remote.ledger import Budget, Reservation, Room, SpendLedger
from aiguilleur.remote.openai_compat import WireResult
from aiguilleur.remote.openrouter import OpenRouterClient
from aiguilleur.remote.prices import PriceBook
from aiguilleur.tasks import TaskSet
from aiguilleur.types import ChatMessage

log = logging.getLogger(__name__)

# How often a request that waits for a busy budget looks at the ledger again.
BUSY_POLL_S = 0.05


class PriceUnknown(Rejected):
    """A budgeted key may not use a model whose price is unknown or variable."""


class Spender:
    def __init__(
        self,
        client: OpenRouterClient,
        ledger: SpendLedger,
        budget: Budget,
        prices: PriceBook,
    ) -> None:
        self.client = client
        self.label = client.label
        self.ledger = ledger
        self.budget = budget
        self._prices = prices
        # Costs asked after the fact, and completions finishing after their keystroke
        # moved on: neither the answer nor a fallback waits for them.
        self._settling = TaskSet()

    async def price(
        self,
        model: str,
        texts: list[str],
        max_tokens: int,
        *,
        feature: str,
        max_price: float | None = None,
    ) -> Price:
        """The bound to reserve and the estimate to show for a request of `texts`."""
        price = self._prices.price(model)
        learned = await asyncio.to_thread(self.ledger.learned, model, feature)
        priced = price_request(price, texts, max_tokens, learned) if price is not None else None
        if priced is None:
            if max_price is None:
                raise PriceUnknown(
                    f"the price of {model} is unknown or variable, so key '{self.label}' "
                    "cannot budget it; set `max_price` on the route to allow it"
                )
            return Price(max_price, max_price, counted_tokens(texts), learned=False)
        return priced

    def priced(self, model: str) -> bool:
        """Whether `model`'s price is known (a shorter prompt then costs less)."""
        return self._prices.price(model) is not None

    async def room(self) -> Room:
        """What this key may still reserve (now, and once its requests in flight settle)."""
        return await asyncio.to_thread(
            self.ledger.room,
            self.label,
            self.budget,
            remote_remaining_usd=self._prices.remaining(self.label),
        )

    async def chat(
        self,
        model: str,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        feature: str,
        route: str,
        temperature: float = 0.0,
        max_price: float | None = None,
        extra: dict[str, Any] | None = None,
        on_text: Callable[[str], None] | None = None,
        busy_wait_s: float = 0.0,
        run_to_end: bool = False,
    ) -> WireResult:
        """A chat. `run_to_end`: once sent, it runs to its end even when the caller moves
        on (a completion asked through a chat model; see `complete`)."""

        async def send(on_generation: Callable[[str], None]) -> WireResult:
            return await self.client.chat(
                model,
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                extra=extra,
                on_text=on_text,
                on_generation=on_generation,
            )

        texts = message_texts(messages)
        price = await self.price(model, texts, max_tokens, feature=feature, max_price=max_price)
        reservation = await self._reserve(price, model, feature, route, busy_wait_s)
        if run_to_end:
            return await self._to_the_end(send, reservation, model)
        return await self._send_and_settle(send, reservation, model)

    async def complete(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int,
        feature: str,
        route: str,
        stop: list[str] | None = None,
        temperature: float = 0.0,
        max_price: float | None = None,
        extra: dict[str, Any] | None = None,
        busy_wait_s: float = 0.0,
    ) -> WireResult:
        """A raw completion. Once sent it runs to its end even when the caller moves on (a
        newer keystroke): it is short, and its cost is then settled exactly instead of
        staying reserved at its bound for good."""

        async def send(on_generation: Callable[[str], None]) -> WireResult:
            return await self.client.complete(
                model,
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
                extra=extra,
                on_generation=on_generation,
            )

        price = await self.price(model, [prompt], max_tokens, feature=feature, max_price=max_price)
        reservation = await self._reserve(price, model, feature, route, busy_wait_s)
        return await self._to_the_end(send, reservation, model)

    async def _to_the_end(
        self,
        send: Callable[[Callable[[str], None]], Awaitable[WireResult]],
        reservation: Reservation,
        model: str,
    ) -> WireResult:
        """Send and settle in a task of its own, which a cancelled caller leaves running."""
        answer: asyncio.Future[WireResult] = asyncio.get_running_loop().create_future()

        async def finish() -> None:
            try:
                result = await self._send_and_settle(send, reservation, model)
            except Exception as error:  # handed to the caller, if it still waits
                if not answer.done():
                    answer.set_exception(error)
                return
            if not answer.done():
                answer.set_result(result)

        self._settling.spawn(finish(), f"answer {self.label}")
        return await answer

    async def _reserve(
        self, price: Price, model: str, feature: str, route: str, busy_wait_s: float
    ) -> Reservation:
        """Reserve the bound. A budget held only by requests in flight is waited for, up to
        `busy_wait_s`; then (or when it is spent) BudgetRefused says which it was."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + busy_wait_s
        while True:
            taking = asyncio.ensure_future(
                asyncio.to_thread(
                    self.ledger.reserve,
                    self.label,
                    price.bound_usd,
                    self.budget,
                    route=route,
                    model=model,
                    feature=feature,
                    remote_remaining_usd=self._prices.remaining(self.label),
                    counted_tokens=price.counted_tokens,
                    estimated_usd=price.estimate_usd,
                )
            )
            try:
                return await asyncio.shield(taking)
            except BudgetRefused as refused:
                if not refused.busy or loop.time() + BUSY_POLL_S > deadline:
                    raise
            except asyncio.CancelledError:
                # The caller moved on while the row was being written: free it once it is.
                self._settling.spawn(self._release_when_taken(taking), "release")
                raise
            await asyncio.sleep(BUSY_POLL_S)

    async def _release_when_taken(self, taking: asyncio.Future[Reservation]) -> None:
        try:
            reservation = await taking
        except BudgetRefused:
            return
        await asyncio.to_thread(self.ledger.release, reservation, "cancelled before sending")

    async def _send_and_settle(
        self,
        send: Callable[[Callable[[str], None]], Awaitable[WireResult]],
        reservation: Reservation,
        model: str,
    ) -> WireResult:
        named: list[str] = []

        def noted(generation_id: str) -> None:
            # Kept with the reservation at once: a process killed before the answer ends
            # leaves the next one a generation whose cost it can ask.
            named.append(generation_id)
            note = asyncio.to_thread(self.ledger.note_generation, reservation, generation_id)
            self._settling.spawn(note, f"note generation {self.label}")

        try:
            result = await send(noted)
        except (RateLimited, OutOfCredit, Rejected, Transient) as error:
            # Refused before generating: nothing was billed.
            await asyncio.to_thread(self.ledger.release, reservation, str(error))
            raise
        except StreamFailed as error:
            # A broken answer is not used, but it may have been billed: settle it with
            # the cost the stream reported, else what OpenRouter says afterwards.
            if error.cost_usd is None:
                self._settle_later(reservation, error.generation_id, str(error))
            else:
                await asyncio.to_thread(
                    self.ledger.settle,
                    reservation,
                    error.cost_usd,
                    model_used=model,
                    prompt_tokens=error.prompt_tokens,
                    completion_tokens=error.completion_tokens,
                    generation_id=error.generation_id,
                )
            raise
        except BaseException:  # cancelled mid-answer: what it cost is learnt later, or never
            if named:  # asked first: a second cancel below must not skip it
                self._settle_later(reservation, named[0], "cancelled")
            await asyncio.shield(
                asyncio.to_thread(self.ledger.unknown, reservation, "", "cancelled")
            )
            raise
        if result.usage.cost_usd is None:
            self._settle_later(reservation, result.generation_id, "no usage.cost")
        else:
            u = result.usage
            await asyncio.to_thread(
                self.ledger.settle,
                reservation,
                u.cost_usd or 0.0,
                model_used=result.model_used,
                prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens,
                cached_tokens=u.cached_tokens,
                generation_id=result.generation_id,
            )
        return result

    def _settle_later(self, reservation: Reservation, generation_id: str, why: str) -> None:
        """Settle in the background; until then the worst case stays reserved (and a
        server that exits first leaves it to the next one's orphan sweep: unknown, still
        counted at its worst case)."""
        work = self._settle_after_the_fact(reservation, generation_id, why)
        self._settling.spawn(work, f"settle {self.label}")

    async def settle_orphans(self) -> int:
        """Ask, in the background, what the requests of a process that ended mid-answer
        cost (their worst case stays spent until then, and for good if it never says);
        how many."""
        orphans = await asyncio.to_thread(self.ledger.orphaned_generations, self.label)
        for reservation, generation_id in orphans:
            self._settle_later(reservation, generation_id, "process ended")
        return len(orphans)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for the costs still being asked after the fact."""
        await self._settling.wait(timeout)

    async def _settle_after_the_fact(
        self, reservation: Reservation, generation_id: str, why: str
    ) -> None:
        cost = await self.client.generation_cost(generation_id) if generation_id else None
        if cost is None:
            log.warning("spend.cost_unknown key=%s why=%s", self.label, why)
            never = f"cost never learnt ({why})"  # not asked again at the next start
            await asyncio.to_thread(self.ledger.unknown, reservation, generation_id, never)
            return
        await asyncio.to_thread(
            self.ledger.settle,
            reservation,
            cost.cost_usd,
            model_used=cost.model,
            prompt_tokens=cost.prompt_tokens,
            completion_tokens=cost.completion_tokens,
            generation_id=generation_id,
        )
