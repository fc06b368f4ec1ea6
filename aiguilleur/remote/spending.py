"""Paid requests under a budget: reserve the worst case, send, settle the real cost.

One `Spender` per OpenRouter key. It never sends a request whose worst-case price is
unknown, and never lets a request through that the ledger refuses; after the answer it
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
    OutOfCredit,
    RateLimited,
    Rejected,
    StreamFailed,
    Transient,
)
from aiguilleur.remote.ledger import Budget, Reservation, SpendLedger
from aiguilleur.remote.openai_compat import WireResult
from aiguilleur.remote.openrouter import OpenRouterClient
from aiguilleur.remote.prices import PriceBook
from aiguilleur.tasks import TaskSet
from aiguilleur.types import ChatMessage

log = logging.getLogger(__name__)

# Tokens a chat message costs beyond its text (role markers and the like), generously.
_MESSAGE_OVERHEAD = 16


class PriceUnknown(Rejected):
    """A budgeted key may not use a model whose price is unknown or variable."""


def worst_prompt_tokens(messages: list[ChatMessage]) -> int:
    # A token covers at least one byte of text: the byte count bounds the token count.
    return sum(len(m.content.encode("utf-8")) + _MESSAGE_OVERHEAD for m in messages)


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
        # Costs asked after the fact: OpenRouter may take seconds (or never) to know them,
        # and neither the answer nor a fallback after a broken one waits for that.
        self._settling = TaskSet()

    def worst_case(
        self, model: str, prompt_tokens: int, max_tokens: int, max_price: float | None
    ) -> float:
        price = self._prices.price(model)
        worst = price.worst_case(prompt_tokens, max_tokens) if price is not None else None
        if worst is None:
            if max_price is None:
                raise PriceUnknown(
                    f"the price of {model} is unknown or variable, so key '{self.label}' "
                    "cannot budget it; set `max_price` on the route to allow it"
                )
            return max_price
        return worst

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
    ) -> WireResult:
        async def send() -> WireResult:
            return await self.client.chat(
                model,
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                extra=extra,
                on_text=on_text,
            )

        worst = self.worst_case(model, worst_prompt_tokens(messages), max_tokens, max_price)
        return await self._paid(send, worst, model=model, feature=feature, route=route)

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
    ) -> WireResult:
        async def send() -> WireResult:
            return await self.client.complete(
                model,
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
                extra=extra,
            )

        tokens = len(prompt.encode("utf-8")) + _MESSAGE_OVERHEAD
        worst = self.worst_case(model, tokens, max_tokens, max_price)
        return await self._paid(send, worst, model=model, feature=feature, route=route)

    async def _paid(
        self,
        send: Callable[[], Awaitable[WireResult]],
        worst: float,
        *,
        model: str,
        feature: str,
        route: str,
    ) -> WireResult:
        reservation = await asyncio.to_thread(
            self.ledger.reserve,
            self.label,
            worst,
            self.budget,
            route=route,
            model=model,
            feature=feature,
            remote_remaining_usd=self._prices.remaining(self.label),
        )
        try:
            result = await send()
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

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for the costs still being asked after the fact."""
        await self._settling.wait(timeout)

    async def _settle_after_the_fact(
        self, reservation: Reservation, generation_id: str, why: str
    ) -> None:
        cost = await self.client.generation_cost(generation_id) if generation_id else None
        if cost is None:
            log.warning("spend.cost_unknown key=%s why=%s", self.label, why)
            await asyncio.to_thread(self.ledger.unknown, reservation, generation_id, why)
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
