"""What a paid request costs: the bound reserved, the estimate shown, what the ledger
learns from settles, and a budget held by requests in flight that is waited for."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from aiguilleur.remote.estimate import count_tokens
from aiguilleur.remote.ledger import Budget, BudgetRefused, SpendLedger, Status
from aiguilleur.remote.openrouter import OpenRouterClient, parse_prices
from aiguilleur.remote.prices import PriceBook
from aiguilleur.remote.spending import Spender
from aiguilleur.types import ChatMessage
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter

KEY = "sk-or-v1-estimate"
CODE = "def mean(values: list[float]) -> float:\n    return sum(values) / len(values)\n" * 20


def spender(fake: FakeOpenRouter, tmp_path: Path, budget: Budget) -> Spender:
    known = parse_prices({"data": [FakeOpenRouter._model_json(m) for m in fake.models]})
    client = OpenRouterClient(KEY, base_url=fake.base_url, label="work")
    return Spender(client, SpendLedger(tmp_path / "ledger.db"), budget, PriceBook(prices=known))


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("system", "Document this code."), ChatMessage("user", text)]


def twice_ours(text: str) -> int:
    return 2 * count_tokens(text)


async def test_the_estimate_learns_the_providers_tokenizer_and_the_bound_holds(
    tmp_path: Path,
) -> None:
    model = FakeModel("vendor/coder", reply="one two three four five", tokens=twice_ours)
    with FakeOpenRouter(models=[model], keys=[FakeKey(KEY, label="work")]) as fake:
        s = spender(fake, tmp_path, Budget(daily=1.0))
        first = await s.price("vendor/coder", [m.content for m in ask(CODE)], 256, feature="x")
        # Before any settle of the model: the bound, and said to be one.
        assert not first.learned and first.estimate_usd == first.bound_usd
        assert first.label().startswith("≤ $")
        results = []
        for n in range(3):
            text = CODE[: 400 * (n + 2)]
            results.append(
                await s.chat("vendor/coder", ask(text), max_tokens=256, feature="x", route="r")
            )
        after = await s.price("vendor/coder", [m.content for m in ask(CODE)], 256, feature="x")
        billed = await s.chat("vendor/coder", ask(CODE), max_tokens=256, feature="x", route="r")
        await s.client.aclose()
    assert after.learned and after.label().startswith("~$")
    cost = billed.usage.cost_usd
    assert cost is not None
    # Learnt: the provider counts twice our tokens, and answers in 5.
    assert after.estimate_usd == pytest.approx(cost, rel=0.02)
    # The bound still holds what the provider billed, and is far above it (bytes).
    assert cost <= after.bound_usd and after.bound_usd > 1.5 * cost
    rows = sqlite3.connect(tmp_path / "ledger.db").execute(
        "SELECT estimated_nusd, cost_nusd FROM requests ORDER BY id"
    )
    estimated, settled = list(rows)[-1]
    assert estimated == pytest.approx(settled, rel=0.02)  # kept beside the settled cost


def test_a_ledger_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, "
            "key_label TEXT NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, "
            "model_used TEXT NOT NULL DEFAULT '', feature TEXT NOT NULL, status TEXT NOT NULL, "
            "reserved_nusd INTEGER NOT NULL DEFAULT 0, cost_nusd INTEGER NOT NULL DEFAULT 0, "
            "prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL "
            "DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0, generation_id TEXT NOT NULL "
            "DEFAULT '', pid INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '')"
        )
        old.execute(
            "INSERT INTO requests (ts, key_label, route, model, feature, status, cost_nusd) "
            "VALUES (1e9, 'work', 'r', 'm', 'chat', 'settled', 5000)"
        )
    ledger = SpendLedger(db)
    r = ledger.reserve(
        "work", 0.01, Budget(), route="r", model="m", feature="chat", counted_tokens=9
    )
    ledger.settle(r, 0.001, prompt_tokens=18, completion_tokens=3)
    assert ledger.learned("m", "chat").prompt_ratio == pytest.approx(2.0)
    assert ledger.spent("work", "total") == pytest.approx(0.001 + 5e-6)


def test_room_says_what_is_left_now_and_once_requests_in_flight_settle(tmp_path: Path) -> None:
    ledger = SpendLedger(tmp_path / "ledger.db")
    budget = Budget(daily=1.0, monthly=1.5)
    done = ledger.reserve("work", 0.3, budget, route="r", model="m", feature="f")
    ledger.settle(done, 0.2)
    ledger.reserve("work", 0.5, budget, route="r", model="m", feature="f")  # in flight
    room = ledger.room("work", budget)
    assert room.now == pytest.approx(0.3) and room.after_in_flight == pytest.approx(0.8)
    assert ledger.room("work", budget, remote_remaining_usd=0.6).now == pytest.approx(0.1)
    assert ledger.room("other", Budget()).now is None  # no limit


async def test_a_busy_budget_is_waited_for_then_the_request_goes_through(
    tmp_path: Path,
) -> None:
    with FakeOpenRouter(keys=[FakeKey(KEY, label="work")]) as fake:
        s = spender(fake, tmp_path, Budget(daily=0.01))
        held = s.ledger.reserve("work", 0.00999, s.budget, route="r", model="m", feature="f")

        async def settle_soon() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(s.ledger.settle, held, 0.001)

        settling = asyncio.create_task(settle_soon())
        with pytest.raises(BudgetRefused) as refused:  # no wait: busy, and said so
            await s.chat("vendor/coder", ask("x = 1"), max_tokens=8, feature="f", route="r")
        assert refused.value.busy
        result = await s.chat(
            "vendor/coder", ask("x = 1"), max_tokens=8, feature="f", route="r", busy_wait_s=5
        )
        await settling
        await s.client.aclose()
    assert result.text and s.ledger.count(Status.SETTLED) == 2


async def test_a_completion_the_user_typed_past_is_still_settled_at_its_real_cost(
    tmp_path: Path,
) -> None:
    model = FakeModel("vendor/coder", reply=" ".join(["word"] * 40))
    with FakeOpenRouter(models=[model], keys=[FakeKey(KEY, label="work")]) as fake:
        fake.stream_delay = 0.02
        s = spender(fake, tmp_path, Budget(daily=1.0))
        asked = asyncio.create_task(
            s.complete("vendor/coder", "def f(", max_tokens=64, feature="completion", route="r")
        )
        while not fake.bodies("/completions"):
            await asyncio.sleep(0.005)
        asked.cancel()  # a newer keystroke
        with pytest.raises(asyncio.CancelledError):
            await asked
        await s.drain(30)
        await s.client.aclose()
        [gid] = list(fake.generations)
        billed = fake.generations[gid]["total_cost"]
    # Settled at what it cost, not held at its bound for good.
    assert s.ledger.count(Status.SETTLED) == 1 and s.ledger.count(Status.UNKNOWN) == 0
    assert s.ledger.spent("work", "daily") == pytest.approx(billed)


async def test_a_request_cancelled_while_its_reservation_is_written_frees_it(
    tmp_path: Path,
) -> None:
    with FakeOpenRouter(keys=[FakeKey(KEY, label="work")]) as fake:
        s = spender(fake, tmp_path, Budget(daily=1.0))
        reserve = s.ledger.reserve

        def slow_reserve(*args: object, **kwargs: object) -> object:
            time.sleep(0.3)  # a commit that takes its time (synchronous=FULL on a slow disk)
            return reserve(*args, **kwargs)  # type: ignore[arg-type]

        s.ledger.reserve = slow_reserve  # type: ignore[method-assign]
        asked = asyncio.create_task(
            s.complete("vendor/coder", "def f(", max_tokens=8, feature="completion", route="r")
        )
        await asyncio.sleep(0.1)
        asked.cancel()  # a newer keystroke, while the row is being written
        with pytest.raises(asyncio.CancelledError):
            await asked
        await s.drain(10)
        await s.client.aclose()
    assert not fake.bodies("/completions")  # never sent
    assert s.ledger.count(Status.RESERVED) == 0 and s.ledger.count(Status.FAILED) == 1
    assert s.ledger.spent("work", "daily") == 0
