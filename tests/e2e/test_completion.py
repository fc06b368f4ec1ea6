"""Completions over real stdio, as Neovim and VS Code ask for them."""

from __future__ import annotations

import pytest
from lsprotocol import types as lsp

from tests.support.home import TestHome
from tests.support.lsp import change_doc, inline, last_completion, lsp_session, open_doc

SOURCE = "import os\n\n\ndef main(argv):\n    name = os.path.basename(argv[0])\n    return \n"


async def items(client, uri: str, line: int, char: int) -> list[lsp.CompletionItem]:  # type: ignore[no-untyped-def]
    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), lsp.Position(line, char))
    )
    assert isinstance(result, lsp.CompletionList)
    assert result.is_incomplete  # so that the client asks again as the user types
    return list(result.items)


@pytest.mark.parametrize("preset", ["neovim", "visual-studio-code"])
async def test_inline_completion_comes_from_the_local_model(
    model_home: TestHome, preset: str
) -> None:
    async with lsp_session(model_home, preset) as client:
        uri = open_doc(client, model_home.workspace / "main.py", SOURCE)
        texts = await inline(client, uri, 5, 11)
        stats = await last_completion(client, uri)
        assert stats is not None
        assert stats["route"] == "local"
        assert stats["usage"]["prompt_tokens"] > 0
        assert stats["text"]
        assert texts == [stats["text"]]


@pytest.mark.parametrize("preset", ["neovim", "visual-studio-code"])
async def test_menu_item_replaces_from_the_word_start(model_home: TestHome, preset: str) -> None:
    text = "def main():\n    retu\n"
    async with lsp_session(model_home, preset) as client:
        uri = open_doc(client, model_home.workspace / "m.py", text)
        [item] = await items(client, uri, 1, 8)
        assert item.text_edit is not None and isinstance(item.text_edit, lsp.TextEdit)
        assert item.text_edit.range.start == lsp.Position(1, 4)
        assert item.text_edit.range.end == lsp.Position(1, 8)
        assert item.text_edit.new_text.startswith("retu")
        assert item.filter_text is not None and item.filter_text.startswith("retu")
        assert len(item.text_edit.new_text) > len("retu")


@pytest.mark.parametrize(
    ("preset", "cursor"),
    # 'é' is 2 UTF-8 bytes / 1 UTF-16 unit; '😋' is 4 bytes / 2 units.
    [("neovim", 4 + len("s = 'é😋' + na".encode())), ("visual-studio-code", 4 + 14)],
)
async def test_multibyte_text_before_the_cursor(
    model_home: TestHome, preset: str, cursor: int
) -> None:
    text = "def f():\n    s = 'é😋' + na\n"
    async with lsp_session(model_home, preset) as client:
        uri = open_doc(client, model_home.workspace / "u.py", text)
        [item] = await items(client, uri, 1, cursor)
        assert isinstance(item.text_edit, lsp.TextEdit)
        assert item.text_edit.new_text.startswith("na")
        assert item.text_edit.range.end.character == cursor
        assert item.text_edit.range.start.character == cursor - 2


@pytest.mark.parametrize("kind", ["inline", "items"])
async def test_typing_through_a_suggestion_does_not_touch_the_model(
    model_home: TestHome, kind: str
) -> None:
    async with lsp_session(model_home) as client:
        uri = open_doc(client, model_home.workspace / "t.py", SOURCE)
        await inline(client, uri, 5, 11)
        first = await last_completion(client, uri)
        assert first is not None and len(first["text"]) >= 3
        typed = first["text"][:2]
        change_doc(client, uri, 2, 5, 11, typed)
        if kind == "inline":
            assert await inline(client, uri, 5, 13) == [first["text"][2:]]
        else:
            [item] = await items(client, uri, 5, 13)
            assert isinstance(item.text_edit, lsp.TextEdit)
            assert item.text_edit.new_text.endswith(first["text"][2:])
        second = await last_completion(client, uri)
        assert second is not None
        assert second["typed_through"] is True
        assert second["usage"]["evaluated_tokens"] == 0
        status = await client.protocol.send_request_async("aiguilleur/status", {})
        assert status.engine.completed == 1


@pytest.mark.parametrize("reuse", [True, False])
async def test_each_keystroke_evaluates_only_the_changed_tokens(
    model_home: TestHome, reuse: bool
) -> None:
    # Typing a character that differs from the suggestion misses typing-through, so the
    # engine runs; the prompt's long common prefix comes from the live KV cache.
    if not reuse:  # an engine setting: the user file's (the daemon's engine is shared)
        config = model_home.config_file.read_text()
        model_home.write_config(config.replace("[local]\n", "[local]\nreuse_prefix = false\n"))
    async with lsp_session(model_home) as client:
        uri = open_doc(client, model_home.workspace / "k.py", SOURCE)
        await inline(client, uri, 5, 11)
        first = await last_completion(client, uri)
        assert first is not None
        char = "\t" if not first["text"].startswith("\t") else " "
        change_doc(client, uri, 2, 5, 11, char)
        await inline(client, uri, 5, 12)
        second = await last_completion(client, uri)
        assert second is not None and not second["typed_through"]
        usage = second["usage"]
    if reuse:
        # The typed character sits after <fim_middle>: nothing before it changed, not
        # even the suffix window, so only its token is evaluated.
        assert usage["reused_tokens"] == usage["prompt_tokens"] - 1
        assert usage["evaluated_tokens"] == 1
    else:  # the measuring baseline: a fresh evaluation per request
        assert usage["reused_tokens"] == 0
        assert usage["evaluated_tokens"] == usage["prompt_tokens"] > 50


async def test_unopened_documents_and_stale_positions_get_an_empty_answer(
    model_home: TestHome,
) -> None:
    async with lsp_session(model_home) as client:
        never_opened = (model_home.workspace / "nope.py").as_uri()
        assert await inline(client, never_opened, 0, 0) == []
        uri = open_doc(client, model_home.workspace / "s.py", "x = 1\n")
        assert await inline(client, uri, 40, 3) == []  # past the last line
        assert await items(client, uri, 99, 0) == []


async def test_binary_and_huge_documents_get_no_suggestion(model_home: TestHome) -> None:
    async with lsp_session(model_home) as client:
        binary = open_doc(client, model_home.workspace / "b.bin", "ab\x00\x01cd\n", "plaintext")
        assert await inline(client, binary, 0, 2) == []
        huge = open_doc(client, model_home.workspace / "h.js", "x=1;" * 1_100_000, "javascript")
        assert await inline(client, huge, 0, 8) == []
        # ...and the server still completes normal files afterwards.
        uri = open_doc(client, model_home.workspace / "ok.py", SOURCE)
        assert await inline(client, uri, 5, 11)


async def test_settings_sent_by_the_editor_apply_to_the_next_completion(
    model_home: TestHome,
) -> None:
    # The VS Code extension sends `aiguilleur.settings` as initializationOptions, then
    # through workspace/didChangeConfiguration when the user edits them.
    async with lsp_session(model_home, init_options={"completion": {"max_tokens": 2}}) as client:
        uri = open_doc(client, model_home.workspace / "s.py", SOURCE)
        await inline(client, uri, 5, 11)
        before = await last_completion(client, uri)
        assert before is not None
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"completion": {"max_tokens": 6}})
        )
        # A character the suggestion does not start with: the engine runs again.
        change_doc(client, uri, 2, 5, 11, " " if before["text"].startswith("\t") else "\t")
        await inline(client, uri, 5, 12)
        after = await last_completion(client, uri)
    assert after is not None
    assert before["usage"]["completion_tokens"] <= 2
    assert 2 < after["usage"]["completion_tokens"] <= 6
