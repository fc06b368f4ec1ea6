"""Completions routed to OpenRouter through the real server, against the fake OpenRouter:
the answer, the ledger, the fallbacks to the local model, and privacy."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from aiguilleur.remote.ledger import SpendLedger, Status
from tests.support.fake_openrouter import Failure, FakeKey, FakeModel, FakeOpenRouter, compat_route
from tests.support.home import TestHome
from tests.support.lsp import (
    inline,
    kill_9_server,
    last_completion,
    lsp_session,
    open_doc,
    status,
)
from tests.support.waiting import wait_for

KEY = "sk-or-v1-CANARY-feedface0123456789"
SOURCE = "def add(a, b):\n    \n"


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter(keys=[FakeKey(KEY, label="work")]) as server:
        yield server


def configure(home: TestHome, model: Path, fake: FakeOpenRouter, daily: float = 1.0) -> None:
    home.write_config(
        f'[local]\nmodel = "{model}"\n'
        "[completion]\nmax_tokens = 8\n"
        f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\n'
        f"daily = {daily}\n"
        '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
        'model = "vendor/coder"\n'
        '[[routes.completion]]\nname = "local"\nbackend = "local"\n'
    )


async def ask(client: Any, home: TestHome, name: str, text: str = SOURCE) -> dict[str, Any]:
    uri = open_doc(client, home.workspace / name, text)
    await inline(client, uri, 1, 4)
    last = await last_completion(client, uri)
    assert last is not None
    return last


def ledger(home: TestHome) -> SpendLedger:
    return SpendLedger(home.root / "data" / "aiguilleur" / "ledger.db")


def chat_requests(fake: FakeOpenRouter) -> int:
    return len(fake.bodies("/chat/completions"))


async def test_a_completion_comes_from_openrouter_and_is_in_the_ledger(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        last = await ask(client, home, "a.py")
        logged = [m.message for m in client.log_messages if "vendor/coder via cloud" in m.message]
        usage = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="aiguilleur.usage")
        )
        shown = [m.message for m in client.messages if "spent today" in m.message]
    assert last["route"] == "cloud" and last["model"] == "vendor/coder"
    assert len(logged) == 1 and "4 out, $0.000" in logged[0]  # the cost, below the cent
    assert usage["rows"][0]["requests"] == 1 and usage["total_usd"] > 0
    assert len(shown) == 1 and "work daily: $1.00 left" in shown[0]
    assert last["text"] == "return a + b"
    assert last["usage"]["cost_usd"] > 0
    [body] = fake.bodies("/chat/completions")
    assert body["provider"] == {"data_collection": "deny"}
    assert "def add(a, b):" in body["messages"][-1]["content"]
    assert ledger(home).count(Status.SETTLED) == 1


async def test_private_files_and_secrets_never_leave_the_machine(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    secret = 'AWS = "AKIAIOSFODNN7EXAMPLE"\n'
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        private = await ask(client, home, ".env", "TOKEN=\n    \n")
        leaky = await ask(client, home, "b.py", secret + SOURCE.replace("\n    \n", "\n"))
    assert private["route"] == "local" and leaky["route"] == "local"
    assert chat_requests(fake) == 0
    sent = " ".join(str(r.body) for r in fake.requests)
    assert "AKIA" not in sent and "TOKEN" not in sent


async def test_a_spent_budget_falls_back_to_local_and_says_so_once(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake, daily=0.0000001)
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        first = await ask(client, home, "a.py")
        second = await ask(client, home, "c.py")
        told = [m.message for m in client.messages if "budget" in m.message]
    assert first["route"] == "local" and second["route"] == "local"
    assert chat_requests(fake) == 0
    assert len(told) == 1 and "key 'work'" in told[0] and "daily budget" in told[0]


async def test_rate_limited_routes_wait_and_fall_back(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    fake.failures.append(Failure(429, "Rate limit exceeded", retry_after=120))
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        first = await ask(client, home, "a.py")
        second = await ask(client, home, "c.py")
    assert first["route"] == "local" and second["route"] == "local"
    assert chat_requests(fake) == 1  # the second request did not knock again
    assert ledger(home).spent("work", "daily") == 0


async def test_the_key_appears_nowhere_after_a_run_with_failures(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    fake.failures += [Failure(401, "No auth"), Failure(mid_stream_error=True)]
    log = home.root / "server.log"
    env = {"AIGUILLEUR_TEST_KEY": KEY}
    async with lsp_session(home, env=env, extra_args=["-v", "--log-file", str(log)]) as client:
        for name in ("a.py", "b.py", "c.py"):
            await ask(client, home, name)
        messages = " ".join(m.message for m in client.messages)
    await asyncio.sleep(0)
    assert KEY not in messages
    for f in home.root.rglob("*"):
        if f.is_file() and "config" not in f.parts:
            assert KEY.encode() not in f.read_bytes(), f


async def test_a_repeated_request_is_answered_from_the_response_cache(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        first = await ask(client, home, "a.py")
        uri = (home.workspace / "a.py").as_uri()
        client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri))
        )
        again = await ask(client, home, "a.py")  # same text, same place: same prompt
    assert chat_requests(fake) == 1
    assert again["text"] == first["text"] and again["usage"]["cached"]
    assert again["usage"]["cost_usd"] == 0
    [row] = ledger(home).usage()
    assert row.requests == 2 and row.cache_hits == 1
    assert row.cost_usd == pytest.approx(first["usage"]["cost_usd"])


async def test_kill_9_of_the_server_mid_run_keeps_every_settled_request_once(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    home.write_config(home.config_file.read_text() + "[cache]\nresponses_mb = 0\n")
    fake.stream_delay = 0.01
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        worker = (await status(client)).pid
        for i in range(6):
            await ask(client, home, f"f{i}.py", f"def f{i}(a, b):\n    \n")
        uri = open_doc(client, home.workspace / "last.py", "def last(a):\n    \n")
        fake.stream_delay = 0.5  # the last answer takes seconds: killed in the middle
        pending = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION,
            lsp.InlineCompletionParams(
                context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
                text_document=lsp.TextDocumentIdentifier(uri),
                position=lsp.Position(1, 4),
            ),
        )
        while chat_requests(fake) < 7:  # the last one is on the wire
            await asyncio.sleep(0.005)
        db = home.root / "data" / "aiguilleur" / "ledger.db"

        def named() -> bool:  # its generation id is kept as soon as the server names it
            with sqlite3.connect(db) as raw:
                query = "SELECT COUNT(*) FROM requests WHERE status = 'reserved' AND "
                return bool(raw.execute(query + "generation_id != ''").fetchone()[0])

        wait_for("the answer's generation id in the ledger", named, 30)
        await kill_9_server(client, home, worker)  # mid-answer
        del pending

    book = ledger(home)
    async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
        await ask(client, home, "after.py", "def after(a):\n    \n")
        # The dead server's reservation was kept with its generation id as soon as the
        # server named it: the next server asks what it cost and settles it (meanwhile).
        wait_for("the orphan to settle", lambda: book.count(Status.SETTLED) == 8, 60)
    assert book.count(Status.RESERVED) == 0 and book.count(Status.UNKNOWN) == 0
    with sqlite3.connect(home.root / "data" / "aiguilleur" / "ledger.db") as raw:
        ids = [
            g for (g,) in raw.execute("SELECT generation_id FROM requests WHERE status='settled'")
        ]
    assert len(ids) == len(set(ids)) == 8 and set(ids) == set(fake.generations)
    billed = sum(fake.generations[g]["total_cost"] for g in ids)
    assert book.spent("work", "daily") == pytest.approx(billed)  # to the cent, nothing lost


async def test_an_openai_compatible_server_answers_without_key_or_ledger(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    fake.anonymous = True
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 8\n'
        '[[routes.completion]]\nname = "team"\nbackend = "openai-compatible"\n'
        f'base_url = "{fake.base_url}"\nmodel = "vendor/coder"\n'
    )
    async with lsp_session(home) as client:
        last = await ask(client, home, "a.py")
    assert last["route"] == "team" and last["text"] == "return a + b"
    [sent] = fake.requests
    assert "Authorization" not in sent.headers
    assert ledger(home).count(Status.SETTLED) == 0  # not paid through a key: not budgeted


async def test_a_raw_fim_answer_is_shaped_as_a_local_one(home: TestHome, tiny_model: Path) -> None:
    """A FIM model behind OpenRouter answers the raw prompt; its answer gets the engine's
    rules: the block ends where a local answer's would, and what repeats the text after
    the cursor is trimmed (they reached the editor as they came)."""
    coder = "qwen/qwen-2.5-coder-32b-instruct"

    def reply(prompt: str) -> str:
        return ", b)" if "max(a" in prompt else "return a + b\nprint(add(1, 2))"

    with FakeOpenRouter(
        models=[FakeModel(coder, reply_for=reply)], keys=[FakeKey(KEY, label="work")]
    ) as fake:
        home.write_config(
            f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 16\n'
            f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\n'
            f'[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
            f'model = "{coder}"\n'
        )
        async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
            block = open_doc(client, home.workspace / "a.py", "def add(a, b):\n    \n")
            in_block = await inline(client, block, 1, 4)
            line = open_doc(client, home.workspace / "b.py", "x = max(a)\n")
            mid_line = await inline(client, line, 0, 9)
        raw = [r for r in fake.requests if r.path == "/api/v1/completions"]
        assert len(raw) == 2  # the raw prompt, not a chat
    assert in_block == ["return a + b"]
    assert mid_line == [", b"]


async def test_an_openai_compatible_server_gets_the_models_fim_prompt_and_its_key(
    home: TestHome, tiny_model: Path
) -> None:
    """vLLM takes no `suffix`: a model whose family's sentinels are known is sent them as
    a raw prompt through `/completions`, with the server's own key, and nothing is
    budgeted (a team's server bills no one)."""
    coder = "Qwen/Qwen2.5-Coder-7B"
    team = FakeKey("team-key-0c2d", label="team")
    with FakeOpenRouter(
        models=[FakeModel(coder, reply_for=lambda _: "return a + b")], keys=[team]
    ) as fake:
        home.write_config(
            f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 16\n'
            '[keys.team]\nenv = "AIGUILLEUR_TEAM_KEY"\n'
            + compat_route("completion", fake, coder)
            + 'key = "team"\n'
        )
        async with lsp_session(home, env={"AIGUILLEUR_TEAM_KEY": team.key}) as client:
            last = await ask(client, home, "a.py")
        [sent] = [r for r in fake.requests if r.path == "/api/v1/completions"]
        assert chat_requests(fake) == 0
    assert last["route"] == "team" and last["text"] == "return a + b"
    assert sent.body is not None and sent.body["prompt"].startswith("<|fim_prefix|>")
    assert "suffix" not in sent.body
    assert sent.headers["Authorization"] == f"Bearer {team.key}"
    assert ledger(home).count(Status.SETTLED) == 0


async def test_a_chat_answer_to_a_completion_is_fitted_whatever_the_models_family(
    home: TestHome, tiny_model: Path
) -> None:
    """A route with `raw_fim = false` (Ollama wraps every prompt in a template) is sent a
    chat; its answer is fitted to the hole even when the model's family has known FIM
    sentinels (it was taken for a raw fill, so the code fences reached the editor)."""
    coder = "qwen2.5-coder-7b-instruct"
    fenced = "```python\nreturn a + b\n```"
    with FakeOpenRouter(models=[FakeModel(coder, reply_for=lambda _: fenced)]) as fake:
        fake.anonymous = True
        home.write_config(
            f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 16\n'
            + compat_route("completion", fake, coder)
            + "raw_fim = false\n"
        )
        async with lsp_session(home) as client:
            last = await ask(client, home, "a.py")
        assert chat_requests(fake) == 1
    assert last["route"] == "team" and last["text"] == "return a + b"
