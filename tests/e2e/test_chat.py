"""Chat documents through the real server and the fake OpenRouter. The test client acts
as an editor: it applies `workspace/applyEdit` to its copy and reports `didChange`, and
opens what `window/showDocument` asks it to open."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from tests.support.editor import Editor
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import code_actions, lsp_session, open_doc, run_command, server_log

KEY = "sk-or-v1-chat-test"
REPLY = "It adds its two arguments and returns the sum, so add(1, 2) is 3."
SOURCE = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    model = FakeModel("vendor/chat", reply=REPLY)
    with FakeOpenRouter(models=[model], keys=[FakeKey(KEY, label="work")]) as server:
        server.stream_delay = 0.04
        yield server


@pytest.fixture
def chat_home(home: TestHome, tiny_model: Path, fake: FakeOpenRouter) -> TestHome:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n'
        f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\ndaily = 1.0\n'
        '[[routes.chat]]\nname = "strong"\nbackend = "openrouter"\nkey = "work"\n'
        'model = "vendor/chat"\n'
        f'[chat]\ndir = "{home.root / "chats"}"\n'
    )
    return home


def session(home: TestHome) -> Any:
    return lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY})


async def test_explain_opens_a_chat_and_streams_the_answer_into_it(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = open_doc(client, chat_home.workspace / "m.py", SOURCE)
        found = await code_actions(client, uri, 0, 2)
        explain = next(a for a in found if "Explain" in a.title)
        # pytest-lsp reads a command-only action as a Command holding the action's repr.
        raw = ast.literal_eval(explain.command) if isinstance(explain, lsp.Command) else None
        assert raw is not None and raw["command"] == "aiguilleur.chat.new"
        result = await run_command(client, raw["command"], *raw["arguments"])
    chat_uri = result["uri"]
    assert [d.uri for d in client.shown_documents] == [chat_uri]
    text = editor.texts[chat_uri]
    selection = client.shown_documents[0].selection
    assert selection is not None  # the cursor ends the question
    assert text.split("\n")[selection.start.line] == "Explain this code."
    assert selection.start.character == len("Explain this code.")
    assert text.startswith("# Chat: m.py, lines 1-2")
    assert "## You\n\nExplain this code.\n\n```python\ndef add(a, b):" in text
    assert "## aiguilleur · vendor/chat · " in text and "tokens · $" in text
    assert REPLY in text and text.endswith("## You\n\n")
    assert editor.edits >= 4  # heading, several pieces of the answer, final heading, next turn
    assert Path(chat_uri.removeprefix("file://")).parent == chat_home.root / "chats"


async def test_send_answers_the_last_turn_with_the_whole_conversation(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    chat = (
        "# Chat: numbers\n<!-- aiguilleur chat; about: /w/m.py -->\n\n"
        "## You\n\nWhat is add?\n\n## aiguilleur · m · 3 tokens\n\nA function.\n\n"
        "## You\n\nWhat does it return?\n"
    )
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        await run_command(client, "aiguilleur.chat", uri)
    [body] = fake.bodies("/chat/completions")
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert body["messages"][-1]["content"] == "What does it return?"
    assert editor.texts[uri].startswith(chat) and REPLY in editor.texts[uri]


async def test_a_chat_stops_on_cancel_request(chat_home: TestHome, fake: FakeOpenRouter) -> None:
    fake.models[0].reply = " ".join(["word"] * 200)
    fake.stream_delay = 0.05
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nTalk.\n"
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        pending = client.protocol.send_request(
            lsp.WORKSPACE_EXECUTE_COMMAND,
            lsp.ExecuteCommandParams(command="aiguilleur.chat", arguments=[uri]),
            msg_id=777,
        )
        while "word" not in editor.texts[uri]:
            await asyncio.sleep(0.01)
        client.protocol.notify("$/cancelRequest", lsp.CancelParams(id=777))
        with pytest.raises(JsonRpcException):
            await asyncio.wait_for(asyncio.wrap_future(pending), 20)
        await asyncio.sleep(0.3)
        streamed = editor.texts[uri].count("word")
    assert 0 < streamed < 200
    assert editor.texts[uri].rstrip().endswith("## You")
    assert "*(stopped)*" in editor.texts[uri]


async def test_a_chat_about_a_private_file_never_leaves(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/.env -->\n\n## You\n\nWhat is in it?\n"
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        with pytest.raises(JsonRpcException):
            await run_command(client, "aiguilleur.chat", uri)
        shown = [m.message for m in client.messages if "private" in m.message]
    assert not fake.bodies("/chat/completions")
    assert len(shown) == 1


async def test_a_local_chat_steps_aside_for_completions_and_finishes(
    home: TestHome, small_model: Path
) -> None:
    home.write_config(
        f'[local]\nmodel = "{small_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 4\nprefix_tokens = 128\nsuffix_tokens = 32\n"
        "extra_tokens = 0\ntime_budget_ms = 600000\n[chat]\nmax_tokens = 160\n"
    )
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nTalk.\n"
    async with lsp_session(home) as client:
        editor = Editor(client)
        uri = (home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        code = open_doc(client, home.workspace / "m.py", "def f(x):\n    return x\n")
        pending = client.protocol.send_request(
            lsp.WORKSPACE_EXECUTE_COMMAND,
            lsp.ExecuteCommandParams(command="aiguilleur.chat", arguments=[uri]),
        )
        while len(editor.texts[uri]) < len(chat) + 40:  # the answer is streaming
            await asyncio.sleep(0.01)
        answered = await client.text_document_inline_completion_async(
            lsp.InlineCompletionParams(
                context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
                text_document=lsp.TextDocumentIdentifier(code),
                position=lsp.Position(1, 12),
            )
        )
        assert not asyncio.wrap_future(pending).done()  # the chat was still going
        result = await asyncio.wait_for(asyncio.wrap_future(pending), 300)
        status = await client.protocol.send_request_async("aiguilleur/status", {})
    assert answered is not None and answered.items  # served in the middle of the chat
    assert status.engine.chat_yields >= 1 and status.engine.chats == 1
    assert result["model"]
    assert "## aiguilleur · " in editor.texts[uri] and " tokens" in editor.texts[uri]
    assert editor.texts[uri].endswith("## You\n\n")


async def test_cancelling_the_progress_bar_stops_the_chat(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    fake.models[0].reply = " ".join(["word"] * 200)
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nTalk.\n"
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        pending = asyncio.ensure_future(run_command(client, "aiguilleur.chat", uri))
        while "word" not in editor.texts[uri]:
            await asyncio.sleep(0.01)
        [token] = [t for t, r in client.progress_reports.items() if "chat" in str(t)]
        begin = client.progress_reports[token][0]
        assert isinstance(begin, lsp.WorkDoneProgressBegin) and begin.cancellable
        client.protocol.notify(
            lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL, lsp.WorkDoneProgressCancelParams(token=token)
        )
        with pytest.raises(JsonRpcException):
            await asyncio.wait_for(pending, 20)
        await asyncio.sleep(0.3)
        end = client.progress_reports[token][-1]
    assert isinstance(end, lsp.WorkDoneProgressEnd) and end.message == "stopped"
    assert "*(stopped)*" in editor.texts[uri] and editor.texts[uri].count("word") < 200


async def test_a_chat_without_arguments_is_about_the_file_being_edited(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    # Helix's :lsp-workspace-command cannot pass the current document.
    async with session(chat_home) as client:
        Editor(client)
        uri = open_doc(client, chat_home.workspace / "m.py", SOURCE)
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [lsp.TextDocumentContentChangeWholeDocument(text=SOURCE + "\n")],
            )
        )
        result = await run_command(client, "aiguilleur.chat.new")
    chat = Path(result["uri"].removeprefix("file://")).read_text()
    assert "about: " + str(chat_home.workspace / "m.py") in chat
    assert "def add(a, b):" in chat
    # No question yet: the editor puts the cursor on the empty line where it goes.
    [shown] = client.shown_documents
    assert shown.selection is not None
    at = shown.selection.start
    lines = chat.split("\n")
    assert lines[at.line - 2] == "## You" and lines[at.line] == "" and at.character == 0


async def test_a_chat_right_after_opening_a_file_is_about_that_file(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    # Helix: `hx m.py`, then `space i c` at once, before typing anything.
    log = chat_home.root / "server.log"
    async with lsp_session(
        chat_home, env={"AIGUILLEUR_TEST_KEY": KEY}, extra_args=["--log-file", str(log)]
    ) as client:
        Editor(client)
        open_doc(client, chat_home.workspace / "m.py", SOURCE)
        first = await run_command(client, "aiguilleur.chat.new")
        # The chat document opening in the editor does not become "the file".
        chat_uri = first["uri"]
        open_doc(client, Path(chat_uri.removeprefix("file://")), read_uri(chat_uri), "markdown")
        second = await run_command(client, "aiguilleur.chat.new")
        # A wrong argument is answered with an error, and the log says so in one line.
        with pytest.raises(JsonRpcException, match=r"aiguilleur\.chat\.new"):
            await run_command(client, "aiguilleur.chat.new", {"uri": 3})
    for result in (first, second):
        assert "about: " + str(chat_home.workspace / "m.py") in read_uri(result["uri"])
    text = server_log(chat_home, log)
    assert "request.answered_with_error JsonRpcInvalidParams" in text
    assert "Traceback" not in text and " ERROR " not in text


def read_uri(uri: str) -> str:
    return Path(uri.removeprefix("file://")).read_text()


async def test_a_chat_is_sent_the_definitions_its_code_uses_never_from_a_private_file(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    """The chat's code uses a class of app/models.py and a function of secrets/keys.py
    (private by the built-in globs): the remote model is told the class's members, and
    nothing of the private file's definitions; the answer lists what was sent."""
    from tests.e2e.test_index import index_when

    app = chat_home.workspace / "app"
    app.mkdir()
    (app / "models.py").write_text(
        "class User:\n    def rename(self, new_name: str) -> None: ...\n"
    )
    (chat_home.workspace / "secrets").mkdir()
    (chat_home.workspace / "secrets" / "keys.py").write_text("def signing_key(salt: int): ...\n")
    view = app / "views.py"
    view.write_text("from app.models import User\nfrom secrets.keys import signing_key\n")
    chat = (
        f"# Chat: x\n<!-- aiguilleur chat; about: {view} -->\n\n## You\n\n"
        "What does this do?\n\n```python\ndef greet(u: User):\n    u.rename(signing_key(1))\n```\n"
    )
    async with session(chat_home) as client:
        await index_when(client, lambda i: i.files == 2)
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        await run_command(client, "aiguilleur.chat", uri)
    [body] = fake.bodies("/chat/completions")
    sent = "\n".join(m["content"] for m in body["messages"])
    assert "def rename(self, new_name: str)" in sent
    assert "def signing_key" not in sent and "salt" not in sent
    assert "*context sent: `app/models.py:1` User*" in editor.texts[uri]


async def test_send_tells_its_price_before_it_runs_and_the_heading_while_it_streams(
    chat_home: TestHome, fake: FakeOpenRouter
) -> None:
    chat = "# Chat: numbers\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nWhat is add?\n"
    async with session(chat_home) as client:
        editor = Editor(client)
        uri = (chat_home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        [send] = await code_actions(client, uri, 5, 5)
        await run_command(client, "aiguilleur.chat", uri)
        shown_while_streaming = editor.history[uri][1]
    title = send.title
    assert re.fullmatch(r"aiguilleur: Send · chat · ≤ \$0\.\d{4}", title), title
    # The heading tells the same price while the answer streams, then what was paid.
    assert "## aiguilleur · chat · ≤ $" in shown_while_streaming
    [gid] = list(fake.generations)
    assert fake.generations[gid]["total_cost"] <= float(title.rsplit("$", 1)[1])
    assert "## aiguilleur · vendor/chat · " in editor.texts[uri]
