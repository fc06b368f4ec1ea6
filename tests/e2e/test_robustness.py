"""The server stays responsive and honest under cancellation, bad config and no model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcRequestCancelled

from tests.support.home import TestHome
from tests.support.lsp import inline, lsp_session, open_doc, status

LONG_LINE = "def f():\n    return 1\n\n"


def inline_params(uri: str, line: int, char: int) -> lsp.InlineCompletionParams:
    return lsp.InlineCompletionParams(
        context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
        text_document=lsp.TextDocumentIdentifier(uri),
        position=lsp.Position(line, char),
    )


async def wait_engine(client: Any, busy: bool, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = await status(client)
        if s.engine is not None and s.model is not None and s.engine.busy == busy:
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"engine never became busy={busy}")


async def test_cancel_request_reaches_the_engine(slow_home: TestHome) -> None:
    async with lsp_session(slow_home) as client:
        uri = open_doc(client, slow_home.workspace / "a.py", LONG_LINE)
        future = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 3, 0), msg_id=4242
        )
        busy = await wait_engine(client, busy=True)  # the loop answers while the engine works
        client.protocol.notify("$/cancelRequest", lsp.CancelParams(id=4242))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wrap_future(future)
        idle = await wait_engine(client, busy=False)
        assert idle.engine.cancelled == 1
        assert idle.engine.completed == 0
        # Stopped between tokens: far fewer than the 3000 it was asked for.
        assert idle.engine.generated_tokens < 3000
        assert busy.engine.generated_tokens <= idle.engine.generated_tokens


async def test_a_newer_request_supersedes_the_running_one(slow_home: TestHome) -> None:
    async with lsp_session(slow_home) as client:
        a = open_doc(client, slow_home.workspace / "a.py", LONG_LINE)
        b = open_doc(client, slow_home.workspace / "b.py", LONG_LINE)
        first = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(a, 3, 0)
        )
        await wait_engine(client, busy=True)
        # The user moved to another file: its request is taken at once, the old one is
        # answered empty rather than making the user wait for a suggestion in a file
        # they left.
        second = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(b, 3, 0)
        )
        old = await asyncio.wait_for(asyncio.wrap_future(first), 30)
        assert not old.items
        await wait_engine(client, busy=True)
        s = await status(client)
        assert s.engine.superseded == 1
        client.protocol.notify("$/cancelRequest", lsp.CancelParams(id=_last_id(client)))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wrap_future(second)


def _last_id(client: Any) -> Any:
    return list(client.protocol._request_futures)[-1]


async def test_stale_version_is_answered_empty(home: TestHome, small_model: Any) -> None:
    home.write_config(
        f'[local]\nmodel = "{small_model}"\n'
        "[completion]\nmax_tokens = 150\ntime_budget_ms = 600000\nextra_tokens = 0\n"
    )
    async with lsp_session(home) as client:
        uri = open_doc(client, home.workspace / "a.py", LONG_LINE)
        pending = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 3, 0)
        )
        await wait_engine(client, busy=True)
        pos = lsp.Position(3, 0)
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [lsp.TextDocumentContentChangePartial(range=lsp.Range(pos, pos), text="x")],
            )
        )
        result = await asyncio.wait_for(asyncio.wrap_future(pending), 60)
        assert not result.items  # computed for version 1, which is gone
        s = await status(client)
        assert s.engine.completed == 1


async def test_shutdown_is_answered_while_the_engine_is_busy(slow_home: TestHome) -> None:
    async with lsp_session(slow_home) as client:
        uri = open_doc(client, slow_home.workspace / "a.py", LONG_LINE)
        pending = client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 3, 0)
        )
        await wait_engine(client, busy=True)
        await asyncio.wait_for(client.shutdown_async(None), 10)
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(pending), 10)
        client.exit(None)
        client.shut_down = True
        assert client._server is not None
        assert await asyncio.wait_for(client._server.wait(), 30) == 0


async def test_invalid_config_keeps_the_server_running_and_names_the_key(
    home: TestHome, tiny_model: Any
) -> None:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = "lots"\nmax_tokenz = 3\n'
    )
    (home.workspace / ".aiguilleur.toml").write_text("[completion\n")
    async with lsp_session(home) as client:
        uri = open_doc(client, home.workspace / "a.py", LONG_LINE)
        assert await inline(client, uri, 2, 0)  # defaults used for the bad keys
        text = "\n".join(m.message for m in client.messages)
        assert "completion.max_tokens" in text and str(home.config_file) in text
        assert "completion.max_tokenz" in text and "typo" in text
        assert ".aiguilleur.toml" in text
        s = await status(client)
        assert len(s.config_problems) == 3


async def test_missing_model_says_how_to_get_one_and_answers_empty(home: TestHome) -> None:
    home.write_config('[local]\nmodel = "/nowhere/model.gguf"\n')
    async with lsp_session(home) as client:
        uri = open_doc(client, home.workspace / "a.py", LONG_LINE)
        assert await inline(client, uri, 2, 0) == []
        assert await inline(client, uri, 2, 0) == []
        s = await status(client)
        assert s.model is None and "not found" in s.model_problem
        shown = [m.message for m in client.messages if "no local completions" in m.message]
        assert len(shown) == 1  # told once, not at every keystroke
        assert "/nowhere/model.gguf" in shown[0] and "aiguilleur pull" in shown[0]


async def test_no_model_anywhere_is_reported_once(home: TestHome) -> None:
    async with lsp_session(home) as client:
        uri = open_doc(client, home.workspace / "a.py", LONG_LINE)
        assert await inline(client, uri, 2, 0) == []
        msgs = [m.message for m in client.messages]
        assert any("no code model found" in m and "aiguilleur pull" in m for m in msgs)


# Over the daemon, the tiny model is loaded (in milliseconds) before the window that
# started the daemon has connected: there is no load left to show.
@pytest.mark.server_modes("standalone")
async def test_model_load_is_shown_as_work_done_progress(model_home: TestHome) -> None:
    async with lsp_session(model_home) as client:
        await wait_engine(client, busy=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # The model's bar (the workspace's index has one of its own).
            reports = [r for t, r in client.progress_reports.items() if "load" in str(t)]
            # A token exists (empty) from its creation until `begin` arrives.
            if reports and reports[0] and isinstance(reports[0][-1], lsp.WorkDoneProgressEnd):
                break
            await asyncio.sleep(0.05)
        assert len(reports) == 1, client.progress_reports
        begin, *_, end = reports[0]
        assert isinstance(begin, lsp.WorkDoneProgressBegin)
        assert begin.message is not None and "loading aiguilleur-tiny.gguf" in begin.message
        assert isinstance(end, lsp.WorkDoneProgressEnd)
        assert end.message is not None and end.message.endswith("ready")
