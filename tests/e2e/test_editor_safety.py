"""What reaches the editor is safe to draw and to run: no control characters in any
text we hand it, and resolving an action that is not ours to resolve is not an error
(Helix resolves every action, command-only ones included, before running it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from tests.support.editor import Editor
from tests.support.fake_openrouter import FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import (
    code_actions,
    inline,
    lsp_session,
    open_doc,
    run_command,
    server_log,
)

# A vertical tab, an escape sequence that clears a terminal, a carriage return, a bell,
# DEL and a C1 control: all seen (or possible) in model output; and bidirectional
# controls (a right-to-left override, an isolate and its end) that make code read
# differently from how it runs.
REPLY = "return\x0b a\u202e\x1b[2J +\r b\x07\u2066\x7f\x9b\u2069"
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SOURCE = "def add(a, b):\n    \n"
SAFE = "return a[2J + b"
# Where the user's own text has them (right-to-left text in a string), they stay.
RTL_STRING = 's = "\u2067\u05e9\u05dc\u05d5\u05dd\u2069"'
WITH_BIDI = "return a\u202e[2J + b\u2066\u2069"


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    with FakeOpenRouter(models=[FakeModel("vendor/coder", reply=REPLY)]) as server:
        server.anonymous = True
        yield server


@pytest.fixture
def team_home(home: TestHome, tiny_model: Path, fake: FakeOpenRouter) -> TestHome:
    """Every feature answered by an openai-compatible server that emits control characters."""
    route = (
        'name = "team"\nbackend = "openai-compatible"\n'
        f'base_url = "{fake.base_url}"\nmodel = "vendor/coder"\n'
    )
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 8\n'
        f"[[routes.completion]]\n{route}[[routes.code_action]]\n{route}[[routes.chat]]\n{route}"
        f'[chat]\ndir = "{home.root / "chats"}"\n'
    )
    return home


def plain(value: Any) -> str:
    return value if isinstance(value, str) else str(getattr(value, "value", value))


async def test_suggestions_reach_the_client_without_control_characters(
    team_home: TestHome,
) -> None:
    async with lsp_session(team_home) as client:
        uri = open_doc(client, team_home.workspace / "a.py", SOURCE)
        ghost = await inline(client, uri, 1, 4)
        menu = await client.text_document_completion_async(
            lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), lsp.Position(1, 4))
        )
    assert ghost == [SAFE]
    [item] = menu.items
    assert item.text_edit is not None and item.text_edit.new_text == SAFE
    shown = [item.label, item.filter_text, plain(item.documentation), item.detail]
    assert not any(CONTROLS.search(str(s)) for s in shown), shown


async def test_code_action_edits_reach_the_client_without_control_characters(
    team_home: TestHome,
) -> None:
    async with lsp_session(team_home) as client:
        uri = open_doc(client, team_home.workspace / "m.py", "def add(a, b):\n    return a\n")
        found = await code_actions(client, uri, 0, 2)
        document = next(a for a in found if "Document" in a.title)
        resolved = await client.code_action_resolve_async(document)
    [edit] = resolved.edit.changes[uri]
    assert edit.new_text == SAFE + "\n"


async def test_chat_insertions_reach_the_client_without_control_characters(
    team_home: TestHome,
) -> None:
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nWhat is add?\n"
    async with lsp_session(team_home) as client:
        editor = Editor(client)
        uri = (team_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        await run_command(client, "aiguilleur.chat", uri)
    text = editor.texts[uri]
    assert SAFE in text and not CONTROLS.search(text)


async def test_bidi_controls_stay_where_the_users_text_has_them(team_home: TestHome) -> None:
    chat = (
        f"# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nWhat is {RTL_STRING}?\n"
    )
    async with lsp_session(team_home) as client:
        uri = open_doc(
            client, team_home.workspace / "a.py", f"def add(a, b):\n    {RTL_STRING}\n    \n"
        )
        ghost = await inline(client, uri, 2, 4)
        code = f"def add(a, b):\n    {RTL_STRING}\n    return a\n"
        m = open_doc(client, team_home.workspace / "m.py", code)
        document = next(a for a in await code_actions(client, m, 0, 3) if "Document" in a.title)
        [edit] = (await client.code_action_resolve_async(document)).edit.changes[m]
        editor = Editor(client)
        c = (team_home.workspace / "c.md").as_uri()
        editor.open(c, chat)
        await run_command(client, "aiguilleur.chat", c)
    assert ghost == [WITH_BIDI]
    assert edit.new_text == WITH_BIDI + "\n"
    assert WITH_BIDI in editor.texts[c]


async def test_resolving_an_action_that_is_not_ours_to_resolve_returns_it(
    team_home: TestHome, fake: FakeOpenRouter
) -> None:
    log = team_home.root / "server.log"
    explain = lsp.CodeAction(
        "aiguilleur: Explain",
        kind=lsp.CodeActionKind.Empty,
        command=lsp.Command(
            "aiguilleur: Explain", "aiguilleur.chat.new", arguments=[{"uri": "file:///m"}]
        ),
    )
    foreign = lsp.CodeAction("Organize imports", data={"ruff": {"fix": 3}})
    async with lsp_session(team_home, extra_args=["--log-file", str(log)]) as client:
        again = [await client.code_action_resolve_async(a) for a in (explain, foreign)]
    assert again[0].title == explain.title and again[0].command is not None
    assert again[0].command.command == "aiguilleur.chat.new"
    assert list(again[0].command.arguments or []) == [{"uri": "file:///m"}]
    assert again[0].edit is None
    assert again[1].title == "Organize imports" and again[1].data == {"ruff": {"fix": 3}}
    assert not fake.bodies("/chat/completions")  # nothing was computed for them
    text = server_log(team_home, log)
    assert "Traceback" not in text and "ERROR" not in text
