"""A broken answer is never used: a stream that breaks off (connection cut, a body that
ends without its end marker, a chunk that does not parse) is not shown, not cached, not
applied; the request falls back to the next route, and what it may have cost is settled.
Through the real server over stdio, against the fake OpenRouter."""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from aiguilleur.remote.ledger import SpendLedger, Status
from tests.support.editor import Editor
from tests.support.fake_openrouter import Failure, FakeKey, FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import (
    code_actions,
    inline,
    last_completion,
    lsp_session,
    open_doc,
    run_command,
)

KEY = "sk-or-v1-integrity-test"
SOURCE = "def add(a, b):\n    \n"
CODE = "import os\n\ndef add(a, b):\n    return a + b\n"
LONG = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    models = [FakeModel("vendor/coder"), FakeModel("vendor/chat", reply=LONG)]
    with FakeOpenRouter(models=models, keys=[FakeKey(KEY, label="work")]) as server:
        yield server


def configure(home: TestHome, model: Path, fake: FakeOpenRouter, extra: str = "") -> None:
    remote = 'backend = "openrouter"\nkey = "work"\n'
    home.write_config(
        f'[local]\nmodel = "{model}"\n[completion]\nmax_tokens = 8\n'
        f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\ndaily = 1.0\n'
        f'[[routes.completion]]\nname = "cloud"\n{remote}model = "vendor/coder"\n'
        '[[routes.completion]]\nname = "local"\n'
        f'[[routes.code_action]]\nname = "strong"\n{remote}model = "vendor/coder"\n'
        f'[[routes.chat]]\nname = "strong"\n{remote}model = "vendor/chat"\n'
        '[[routes.chat]]\nname = "local"\n'
        f'[chat]\ndir = "{home.root / "chats"}"\n' + extra
    )


def session(home: TestHome, preset: str = "neovim") -> Any:
    return lsp_session(home, preset, env={"AIGUILLEUR_TEST_KEY": KEY})


def ledger(home: TestHome) -> SpendLedger:
    return SpendLedger(home.root / "data" / "aiguilleur" / "ledger.db")


async def settled(home: TestHome, timeout: float = 30.0) -> SpendLedger:
    """The ledger once no reservation is waiting for its cost (asked after the fact)."""
    book = ledger(home)
    deadline = time.monotonic() + timeout
    while book.count(Status.RESERVED) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return book


@pytest.mark.parametrize(
    "failure",
    [Failure(end_after=2), Failure(cut_after=2), Failure(garbage_after=2)],
    ids=["ended", "cut", "garbage"],
)
async def test_a_broken_completion_falls_back_is_not_cached_and_is_settled(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter, failure: Failure
) -> None:
    configure(home, tiny_model, fake)
    fake.failures.append(failure)
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "a.py", SOURCE)
        await inline(client, uri, 1, 4)
        first = await last_completion(client, uri)
        book = await settled(home)
        waiting, accounted = book.count(Status.RESERVED), book.count(Status.SETTLED)
        accounted += book.count(Status.UNKNOWN)
        # The same request again: a cached half answer would come back without a request.
        client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri))
        )
        uri = open_doc(client, home.workspace / "a.py", SOURCE)
        await inline(client, uri, 1, 4)
        again = await last_completion(client, uri)
        told = [m.message for m in client.messages if "route 'cloud' failed" in m.message]
    assert first is not None and again is not None
    assert first["route"] == "local"  # the next route answered
    assert again["route"] == "cloud" and again["text"] == "return a + b"
    assert not again["usage"]["cached"] and len(fake.bodies("/chat/completions")) == 2
    assert len(told) == 1
    # The broken request is in the ledger, settled with what it cost: never missing.
    assert waiting == 0 and accounted == 1
    billed = sum(g["total_cost"] for g in fake.generations.values())
    assert ledger(home).spent("work", "daily") >= billed


async def test_a_code_action_whose_stream_is_cut_leaves_the_document_untouched(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    fake.models[0].reply = 'def add(a, b):\n    """Add two numbers."""\n    return a + b'
    fake.failures += [Failure(cut_after=3), Failure(end_after=3)]
    async with session(home, preset="emacs") as client:  # the command path: applyEdit
        editor = Editor(client)
        uri = (home.workspace / "m.py").as_uri()
        editor.open(uri, CODE)
        found = await code_actions(client, uri, 2, 4)
        document = next(a for a in found if "Document" in a.title)
        # pytest-lsp reads the action as a Command holding the action's repr: read it back.
        raw = ast.literal_eval(document.command)
        for _ in range(2):
            with pytest.raises(JsonRpcException):
                await run_command(client, raw["command"], *raw["arguments"])
        told = [m.message for m in client.messages if "no route could answer" in m.message]
    assert editor.texts[uri] == CODE and editor.edits == 0
    assert len(told) == 2 and "strong" in told[0]


async def test_an_edit_cut_by_max_tokens_is_not_applied(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake, "[actions]\nmax_tokens = 2\n")
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "m.py", CODE)
        found = await code_actions(client, uri, 2, 4)
        document = next(a for a in found if "Document" in a.title)
        with pytest.raises(JsonRpcException) as refused:
            await client.code_action_resolve_async(document)
        told = [m.message for m in client.messages if "used all its tokens" in m.message]
    assert "incomplete" in str(refused.value)
    assert len(told) == 1 and "`[actions] max_tokens` (now 2)" in told[0]


async def test_a_cut_chat_keeps_what_arrived_marked_as_cut_and_says_why(
    home: TestHome, tiny_model: Path, fake: FakeOpenRouter
) -> None:
    configure(home, tiny_model, fake)
    fake.failures.append(Failure(cut_after=5))
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nTalk.\n"
    async with session(home) as client:
        editor = Editor(client)
        uri = (home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        with pytest.raises(JsonRpcException):
            await run_command(client, "aiguilleur.chat", uri)
        told = [m.message for m in client.messages if "broke off" in m.message]
        await settled(home)
    text = editor.texts[uri]
    assert "word0 word1 word2 word3 word4" in text and "word5" not in text
    assert "## aiguilleur · vendor/chat · cut" in text and "*(cut: " in text
    assert text.endswith("## You\n\n")
    assert text.count("## aiguilleur") == 1  # no second route's answer after the first half
    assert len(told) == 1 and "connection cut mid-answer" in told[0]
    assert ledger(home).count(Status.RESERVED) == 0
