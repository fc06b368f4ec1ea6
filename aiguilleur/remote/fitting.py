"""A completion's prompt for a remote route: the cursor's file fitted to the route's
budgets in tokens, and at the end of a spending budget the same prompt cut shorter (the
lines farthest from the cursor first) until the most it could cost fits what is left."""

from __future__ import annotations

import msgspec

from aiguilleur.backends.remote_fim import RawFimPrompt, chat_fim_messages, raw_fim_prompt
from aiguilleur.context.window import fitted
from aiguilleur.remote.spending import Spender
from aiguilleur.types import FimContext, Request, Route

# At a budget's end, a completion's prompt is cut to fit what is left, down to this many
# tokens before the cursor (estimated; less is no longer worth paying for), in at most
# _TRIM_TRIES steps.
MIN_PREFIX_TOKENS = 64
_TRIM_TRIES = 4


async def within_budget(
    spender: Spender, route: Route, request: Request, ctx: FimContext, max_tokens: int
) -> FimContext | None:
    """At the end of a budget, where the request's bound no longer fits what is left
    even once the requests in flight have settled: the same context cut shorter (its
    far ends first) until its bound fits, if it keeps at least MIN_PREFIX_TOKENS before
    the cursor. None: sent as it is (it fits, or it is refused as it is)."""
    room = (await spender.room()).after_in_flight
    if room is None or not spender.priced(route.model):
        return None  # no limit, or capped by `max_price`: no shorter prompt costs less
    most = await bound(spender, route, request, ctx, max_tokens)
    prefix_tokens = request.prefix_tokens
    for _ in range(_TRIM_TRIES):
        if most <= room:
            return None if prefix_tokens == request.prefix_tokens else ctx
        if prefix_tokens == MIN_PREFIX_TOKENS:
            return None
        # The bound is about proportional to the text kept: aim a little under.
        prefix_tokens = max(MIN_PREFIX_TOKENS, int(prefix_tokens * room / most * 0.9))
        ctx = cut(request, prefix_tokens)
        most = await bound(spender, route, request, ctx, max_tokens)
    return ctx if most <= room else None


async def bound(
    spender: Spender, route: Route, request: Request, ctx: FimContext, max_tokens: int
) -> float:
    """The most a completion of `ctx` through `route` could cost."""
    price = await spender.price(
        route.model,
        texts(route, ctx),
        max_tokens,
        feature=request.kind.value,
        max_price=route.max_price,
    )
    return price.bound_usd


def cut(request: Request, prefix_tokens: int) -> FimContext:
    """`request`'s context fitted to `prefix_tokens` before the cursor (and as much less
    after it), the cursor's file only."""
    share = prefix_tokens / max(1, request.prefix_tokens)
    ctx = fitted(request.context, prefix_tokens, int(request.suffix_tokens * share))
    return msgspec.structs.replace(ctx, extra=(), repository=())


def texts(route: Route, ctx: FimContext) -> list[str]:
    """What a completion of `ctx` through `route` sends: a raw prompt, or chat messages."""
    raw = raw_prompt(route, ctx)
    return [raw.prompt] if raw is not None else [m.content for m in chat_fim_messages(ctx)]


def raw_prompt(route: Route, ctx: FimContext) -> RawFimPrompt | None:
    """A model whose family's sentinels are known gets a raw FIM prompt (vLLM and others
    take no `suffix`); any other is sent a chat, whose answer is fitted."""
    return raw_fim_prompt(route.model, ctx.prefix, ctx.suffix) if route.raw_fim else None
