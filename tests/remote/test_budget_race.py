"""Windows racing for one small budget, against the fake OpenRouter: the budget is spent
to its last cents and never past them, even where the provider's tokenizer counts twice
what ours does."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from aiguilleur.backends.remote_fim import HOLE
from aiguilleur.config.settings import Config
from aiguilleur.errors import BudgetRefused
from aiguilleur.remote.estimate import count_tokens
from aiguilleur.remote.ledger import Budget, Status
from aiguilleur.remote.routes import RemoteRoutes
from aiguilleur.types import Backend, FimContext, GenerationParams, Request, RequestKind, Route
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter

KEY = "sk-or-v1-race"
DAILY = 0.02
ROW = {"route": "cloud", "model": "vendor/coder", "feature": "completion"}
ROUTE = Route("cloud", Backend.OPENROUTER, model="vendor/coder", key="work")


def twice_ours(text: str) -> int:
    return 2 * count_tokens(text)


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    # $0.20 per million prompt tokens: a request of this test costs $0.0002 to $0.0015.
    model = FakeModel("vendor/coder", "0.0000002", "0.000002", tokens=twice_ours)
    with FakeOpenRouter(models=[model], keys=[FakeKey(KEY, label="work")]) as server:
        yield server


def routes(tmp_path: Path, fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> RemoteRoutes:
    monkeypatch.setenv("RACE_KEY", KEY)
    config = msgspec.convert(
        {
            "keys": {"work": {"env": "RACE_KEY", "base_url": fake.base_url, "daily": DAILY}},
            "routes": {"completion": [msgspec.to_builtins(ROUTE)]},
            "cache": {"responses_mb": 0},
        },
        Config,
    )
    return RemoteRoutes(config, tmp_path / "ledger.db", tmp_path / "prices.json", [].append)


def request(rng: random.Random, window: int, n: int) -> Request:
    lines = [
        f"    total_{window}_{n}_{i} = compute(values[{i}], scale={i * 7})\n" for i in range(400)
    ]
    size = rng.choice([40, 120, 250, 400])  # prompts of 2 to 25 kB
    prefix = "def handler(values):\n" + "".join(lines[:size])
    return Request(
        RequestKind.COMPLETION,
        key=f"window-{window}",
        context=FimContext(f"w{window}.py", prefix + "    ", "\n    return total\n"),
        params=GenerationParams(max_tokens=16),
        prefix_tokens=8192,
    )


async def race(remote: RemoteRoutes, windows: int, seed: int) -> tuple[int, int]:
    """Each window asks until the daemon holds the key for spent (as the router does:
    one refusal that is not busy sends every window to the fallback); returns (answers,
    requests that found the budget busy)."""
    answers = busy = 0

    async def window(w: int) -> None:
        nonlocal answers, busy
        rng = random.Random(seed * 100 + w)
        for n in range(200):
            if remote.exhausted_keys(time.time()):
                return
            try:
                await remote.complete(ROUTE, request(rng, w, n))
            except BudgetRefused as refused:
                remote.note_failure(ROUTE, refused, time.time())
                busy += refused.busy
                await asyncio.sleep(0.01)  # this keystroke went to the fallback
                continue
            answers += 1

    await asyncio.gather(*(window(w) for w in range(windows)))
    return answers, busy


@pytest.mark.parametrize("seed", [1, 2])
async def test_five_windows_spend_the_budget_to_its_last_cents_never_past_them(
    tmp_path: Path, fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    fake.stream_delay = 0.003
    remote = routes(tmp_path, fake, monkeypatch)
    await remote.start()
    try:
        answers, _ = await race(remote, windows=5, seed=seed)
    finally:
        await remote.close()
    billed = fake.keys[0].usage
    book = remote.ledger
    # Never past the limit, whatever the provider's tokenizer counted...
    assert billed <= DAILY
    # ... and every answer billed is settled at what the provider billed.
    assert book.count(Status.RESERVED) == 0 and book.count(Status.UNKNOWN) == 0
    assert book.spent("work", "daily") == pytest.approx(billed, abs=1e-9)
    assert answers == book.count(Status.SETTLED) == len(fake.bodies("/chat/completions"))
    # Spent to its last cents: the last requests were sent with shorter prompts.
    assert billed >= 0.9 * DAILY, f"only {billed / DAILY:.0%} of the budget was spent"


async def test_the_last_cents_buy_a_shorter_prompt_not_a_refusal(
    tmp_path: Path, fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = routes(tmp_path, fake, monkeypatch)
    await remote.start()
    rng = random.Random(3)
    big = request(rng, 0, 0)
    while len(big.context.prefix) < 20_000:
        big = request(rng, 0, 0)
    try:
        # All but $0.0015 spent: less than this prompt's bound, more than a short one's.
        spent = remote.ledger.reserve("work", DAILY - 0.0015, Budget(daily=DAILY), **ROW)
        remote.ledger.settle(spent, DAILY - 0.0015)
        answer = await remote.complete(ROUTE, big)
    finally:
        await remote.close()
    assert answer.text
    [sent] = fake.bodies("/chat/completions")
    prefix = sent["messages"][-1]["content"].split("\n\n", 1)[1].split(HOLE)[0]
    # The lines nearest the cursor, fewer of them, and the budget not passed.
    assert big.context.prefix.endswith(prefix)
    assert 1_000 < len(prefix) < len(big.context.prefix) / 2
    assert fake.keys[0].usage <= DAILY
