"""The OpenRouter route over real HTTP to a faithful fake: streaming, every failure the
router acts on, prices, key info, and budgets that hold with 200 concurrent requests."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import pytest

from aiguilleur.errors import OutOfCredit, RateLimited, Rejected, StreamFailed, Transient
from aiguilleur.remote.ledger import Budget, BudgetRefused, SpendLedger, Status
from aiguilleur.remote.openai_compat import OpenAICompatClient
from aiguilleur.remote.openrouter import OpenRouterClient, parse_prices, provider_preferences
from aiguilleur.remote.prices import PriceBook
from aiguilleur.remote.spending import PriceUnknown, Spender
from aiguilleur.types import ChatMessage
from tests.support.fake_openrouter import Failure, FakeKey, FakeModel, FakeOpenRouter

KEY = "sk-or-v1-CANARY-0123456789abcdef"
ASK = [ChatMessage("user", "add two numbers")]


@pytest.fixture
def fake() -> FakeOpenRouter:
    with FakeOpenRouter(keys=[FakeKey(KEY, label="work")]) as server:
        yield server


def client(fake: FakeOpenRouter) -> OpenRouterClient:
    return OpenRouterClient(KEY, base_url=fake.base_url, label="work")


def spender(fake: FakeOpenRouter, tmp_path: Path, budget: Budget) -> Spender:
    c = client(fake)
    ledger = SpendLedger(tmp_path / "ledger.db")
    known = parse_prices({"data": [FakeOpenRouter._model_json(m) for m in fake.models]})
    return Spender(c, ledger, budget, PriceBook(prices=known))


async def test_a_streamed_answer_carries_text_cost_and_generation_id(
    fake: FakeOpenRouter,
) -> None:
    c = client(fake)
    seen: list[str] = []
    result = await c.chat(
        "vendor/coder", ASK, max_tokens=16, extra=provider_preferences(False), on_text=seen.append
    )
    await c.aclose()
    assert result.text == "return a + b" and "".join(seen) == result.text
    assert result.generation_id.startswith("gen-") and result.model_used == "vendor/coder"
    assert result.usage.cost_usd is not None and result.usage.cost_usd > 0
    assert result.usage.completion_tokens == 4
    [sent] = fake.requests
    assert sent.headers["HTTP-Referer"] and sent.headers["X-OpenRouter-Title"] == "aiguilleur"
    assert sent.body is not None and sent.body["stream"] is True
    assert sent.body["provider"] == {"data_collection": "deny"}


async def test_failures_map_to_what_the_router_does_next(fake: FakeOpenRouter) -> None:
    c = client(fake)
    fake.failures += [
        Failure(429, "Rate limit exceeded", retry_after=7),
        Failure(402, "Insufficient credits"),
        Failure(403, "Key limit exceeded (daily limit)"),
        Failure(503, "No available providers"),
        Failure(400, "bad request"),
    ]
    with pytest.raises(RateLimited) as limited:
        await c.chat("vendor/coder", ASK, max_tokens=8)
    assert limited.value.retry_after == 7
    for expected in (OutOfCredit, OutOfCredit, Transient, Rejected):
        with pytest.raises(expected):
            await c.chat("vendor/coder", ASK, max_tokens=8)
    with pytest.raises(Rejected):
        await c.chat("vendor/unknown", ASK, max_tokens=8)
    fake.failures.append(Failure(mid_stream_error=True, message="Provider disconnected"))
    with pytest.raises(StreamFailed) as broken:
        await c.chat("vendor/coder", ASK, max_tokens=8)
    assert broken.value.generation_id.startswith("gen-") and broken.value.text
    await c.aclose()


async def test_an_unreachable_server_is_transient() -> None:
    with FakeOpenRouter() as gone:
        url = gone.base_url
    c = OpenAICompatClient(url, "sk-whatever")
    with pytest.raises(Transient):
        await c.chat("m", ASK, max_tokens=4)
    await c.aclose()


async def test_prices_and_key_info(fake: FakeOpenRouter) -> None:
    fake.models += [
        FakeModel("vendor/free:free", "0", "0"),
        FakeModel("vendor/router", "-1", "-1"),
    ]
    fake.keys[0].limit, fake.keys[0].usage = 5.0, 1.25
    c = client(fake)
    prices = await c.prices()
    info = await c.key_info()
    await c.aclose()
    assert prices["vendor/coder"].prompt == pytest.approx(1e-6)
    assert prices["vendor/free:free"].free
    assert not prices["vendor/router"].known  # variable price: cannot be budgeted
    assert info.limit == 5.0 and info.limit_remaining == pytest.approx(3.75)


async def test_spend_settles_with_usage_cost(fake: FakeOpenRouter, tmp_path: Path) -> None:
    s = spender(fake, tmp_path, Budget(daily=1.0))
    result = await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    await s.client.aclose()
    [row] = s.ledger.usage()
    assert row.cost_usd == pytest.approx(result.usage.cost_usd)
    assert s.ledger.count(Status.SETTLED) == 1


@pytest.mark.parametrize(
    "failure", [Failure(mid_stream_error=True), Failure(cut_before_usage=True)]
)
async def test_a_broken_answer_is_settled_from_the_generation_endpoint(
    fake: FakeOpenRouter, tmp_path: Path, failure: Failure
) -> None:
    fake.failures.append(failure)
    s = spender(fake, tmp_path, Budget(daily=1.0))
    with pytest.raises(StreamFailed) as broken:
        await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    await s.drain(30)
    await s.client.aclose()
    lookups = [r for r in fake.requests if r.path.startswith("/api/v1/generation")]
    assert len(lookups) == fake.generation_404s + 1  # it retried through the 404s
    gid = broken.value.generation_id
    assert s.ledger.count(Status.SETTLED) == 1
    assert s.ledger.spent("work", "daily") == pytest.approx(fake.generations[gid]["total_cost"])


BROKEN = [
    Failure(end_after=2),  # the body ends cleanly: no finish_reason, no [DONE]
    Failure(cut_after=2),  # the connection is shut down mid-answer
    Failure(garbage_after=2),  # a chunk that is not JSON
]


@pytest.mark.parametrize("failure", BROKEN, ids=["ended", "cut", "garbage"])
async def test_an_answer_without_its_end_is_a_failure_not_a_short_answer(
    fake: FakeOpenRouter, failure: Failure
) -> None:
    fake.failures.append(failure)
    c = client(fake)
    with pytest.raises(StreamFailed) as broken:
        await c.chat("vendor/coder", ASK, max_tokens=16)
    assert broken.value.text == "return a"  # what arrived, for a chat to keep
    assert broken.value.generation_id.startswith("gen-")
    again = await c.chat("vendor/coder", ASK, max_tokens=16)  # the client is still sound
    await c.aclose()
    assert again.text == "return a + b" and again.finish_reason == "stop"


@pytest.mark.parametrize("failure", BROKEN, ids=["ended", "cut", "garbage"])
async def test_a_broken_answer_is_settled_never_missing(
    fake: FakeOpenRouter, tmp_path: Path, failure: Failure
) -> None:
    fake.failures.append(failure)
    s = spender(fake, tmp_path, Budget(daily=1.0))
    with pytest.raises(StreamFailed) as broken:
        await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    # Raised at once, so the caller falls back without waiting for OpenRouter to know
    # the cost: until it does, the worst case stays reserved.
    assert s.ledger.count(Status.RESERVED) == 1
    await s.drain(30)
    await s.client.aclose()
    gid = broken.value.generation_id
    assert s.ledger.count(Status.RESERVED) == 0
    assert s.ledger.count(Status.SETTLED) == 1  # from the generation endpoint
    assert s.ledger.spent("work", "daily") == pytest.approx(fake.generations[gid]["total_cost"])


async def test_a_broken_answer_that_reported_its_usage_is_settled_from_it(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.failures.append(Failure(end_after=2, usage_before_end=True))
    s = spender(fake, tmp_path, Budget(daily=1.0))
    with pytest.raises(StreamFailed) as broken:
        await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    await s.client.aclose()
    assert not [r for r in fake.requests if r.path.startswith("/api/v1/generation")]
    gid = broken.value.generation_id
    assert s.ledger.spent("work", "daily") == pytest.approx(fake.generations[gid]["total_cost"])
    assert s.ledger.count(Status.SETTLED) == 1


async def test_unknown_cost_of_a_broken_answer_keeps_its_worst_case_spent(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.failures.append(Failure(cut_after=2))
    fake.generation_404s = 1000  # OpenRouter never learns what it cost
    s = spender(fake, tmp_path, Budget(daily=1.0))
    # Asked twice without backoff rather than over the 30 s a real lookup waits.
    s.client.generation_cost = functools.partial(  # type: ignore[method-assign]
        s.client.generation_cost, attempts=2, delay=0.0
    )
    worst = (await s.price("vendor/coder", [m.content for m in ASK], 16, feature="chat")).bound_usd
    with pytest.raises(StreamFailed):
        await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    await s.drain(30)
    await s.client.aclose()
    assert s.ledger.count(Status.UNKNOWN) == 1 and s.ledger.count(Status.RESERVED) == 0
    assert s.ledger.spent("work", "daily") == pytest.approx(worst)


async def test_refused_requests_free_their_reservation(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.failures.append(Failure(429, "slow down", retry_after=1))
    s = spender(fake, tmp_path, Budget(daily=1.0))
    with pytest.raises(RateLimited):
        await s.chat("vendor/coder", ASK, max_tokens=16, feature="chat", route="strong")
    await s.client.aclose()
    assert s.ledger.spent("work", "daily") == 0
    assert s.ledger.count(Status.FAILED) == 1


async def test_an_unpriced_model_is_refused_unless_the_route_caps_it(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.models.append(FakeModel("vendor/router", "-1", "-1"))
    s = spender(fake, tmp_path, Budget(daily=1.0))
    with pytest.raises(PriceUnknown):
        await s.chat("vendor/router", ASK, max_tokens=16, feature="chat", route="r")
    assert not fake.bodies("/chat/completions")  # nothing left the machine
    await s.chat("vendor/router", ASK, max_tokens=16, feature="chat", route="r", max_price=0.01)
    await s.client.aclose()
    assert s.ledger.spent("work", "daily") > 0


async def test_200_concurrent_paid_requests_never_pass_the_budget(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.stream_delay = 0.002
    # Worst case per request here is ~1.6e-4 USD; a budget of 0.008 fits about 50.
    s = spender(fake, tmp_path, Budget(daily=0.008))

    async def one() -> str:
        try:
            await s.chat("vendor/coder", ASK, max_tokens=16, feature="completion", route="r")
        except BudgetRefused:
            return "refused"
        return "ok"

    outcomes = await asyncio.gather(*(one() for _ in range(200)))
    await s.client.aclose()
    settled = s.ledger.spent("work", "daily")
    assert settled <= 0.008
    assert outcomes.count("ok") == len(fake.bodies("/chat/completions"))
    assert outcomes.count("ok") >= 45 and outcomes.count("refused") > 0
    assert s.ledger.count(Status.RESERVED) == 0


async def test_the_key_never_reaches_logs_ledger_or_errors(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.failures += [
        Failure(401, "bad key"),
        Failure(mid_stream_error=True),
        Failure(429, "slow", retry_after=1),
    ]
    s = spender(fake, tmp_path, Budget(daily=1.0))
    errors: list[str] = []
    for _ in range(4):
        try:
            await s.chat("vendor/coder", ASK, max_tokens=8, feature="chat", route="r")
        except Exception as error:
            errors.append(f"{error!r} {error}")
    await s.client.aclose()
    assert len(errors) == 3
    assert KEY not in repr(s.client) and KEY not in " ".join(errors)
    assert KEY not in caplog.text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
