"""Start the real `aiguilleur serve` over stdio and drive it with pytest-lsp's client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from aiguilleur.lsp.protocol import client_process
from tests.support.home import TestHome

# AIGUILLEUR_TEST_SERVER_ARGS="-v --log-file /tmp/s.log" keeps a debug log of each server.
SERVER = [
    sys.executable,
    "-m",
    "aiguilleur",
    "serve",
    *os.environ.get("AIGUILLEUR_TEST_SERVER_ARGS", "").split(),
]


@contextlib.asynccontextmanager
async def lsp_session(
    home: TestHome,
    preset: str = "neovim",
    init_options: Any = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    server: list[str] | None = None,
) -> AsyncIterator[LanguageClient]:
    """A window: `server` (`aiguilleur serve` by default) started and initialized."""
    config = ClientServerConfig(
        server_command=[*(server or SERVER), *home.serve_args, *(extra_args or [])],
        server_env=home.env(**(env or {})),
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    params = lsp.InitializeParams(
        capabilities=client_capabilities(preset),
        root_uri=home.workspace.as_uri(),
        initialization_options=init_options,
    )
    # Kept for tests of what the server declares.
    client.initialize_result = await client.initialize_session(params)  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        if not getattr(client, "shut_down", False):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown_session(), 30)
        await client.stop()


async def kill_9_server(client: LanguageClient, home: TestHome, pid: int) -> None:
    """kill -9 of what does the work (`pid`, from aiguilleur/status): the server, or in
    daemon mode the daemon (its window then starts a new one; the editor's process, the
    shim, lives on)."""
    if home.mode == "daemon":
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)  # (a zombie answers too, until the shim reaps it)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.02)
        return
    process = client_process(client)
    assert process is not None
    process.kill()
    await process.wait()
    client.shut_down = True  # type: ignore[attr-defined]


def server_log(home: TestHome, log_file: Path) -> str:
    """What the server logged: its `--log-file`, and the daemon's log (in daemon mode
    the editor's `serve` relays; the daemon does the work and logs it)."""
    own = log_file.read_text(errors="replace") if log_file.exists() else ""
    return own + home.daemon_log


def open_doc(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, language, 1, text))
    )
    return uri


def change_doc(
    client: LanguageClient, uri: str, version: int, line: int, char: int, text: str
) -> None:
    """Insert `text` at (line, char), as an editor sends a keystroke."""
    pos = lsp.Position(line, char)
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(version=version, uri=uri),
            [lsp.TextDocumentContentChangePartial(range=lsp.Range(pos, pos), text=text)],
        )
    )


async def inline(client: LanguageClient, uri: str, line: int, char: int) -> list[str]:
    result = await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
            text_document=lsp.TextDocumentIdentifier(uri),
            position=lsp.Position(line, char),
        )
    )
    if result is None:
        return []
    items = result.items if isinstance(result, lsp.InlineCompletionList) else result
    return [i.insert_text if isinstance(i.insert_text, str) else i.insert_text.value for i in items]


async def last_completion(client: LanguageClient, uri: str) -> dict[str, Any] | None:
    result = await client.protocol.send_request_async("aiguilleur/lastCompletion", {"uri": uri})
    return None if result is None else _plain(result)


async def status(client: LanguageClient) -> Any:
    """aiguilleur/status: the model, the engine's counters, the KV store."""
    return await client.protocol.send_request_async("aiguilleur/status", {})


async def idle(
    client: LanguageClient, until: Callable[[Any], bool] = lambda s: True, seconds: float = 60
) -> Any:
    """The status once the engine is loaded, idle, and `until` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = await status(client)
        if s.engine is not None and s.model is not None and not s.engine.busy and until(s):
            return s
        await asyncio.sleep(0.05)
    raise AssertionError("the engine never became idle")


def _plain(obj: Any) -> Any:
    """pygls hands back custom results as namedtuple-like objects: make them dicts."""
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


async def code_actions(
    client: LanguageClient, uri: str, start: int, end: int, diagnostics: Any = ()
) -> list[Any]:
    """The actions for lines start..end (end exclusive, at column 0), as an editor asks."""
    result = await client.text_document_code_action_async(
        lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri),
            range=lsp.Range(lsp.Position(start, 0), lsp.Position(end, 0)),
            context=lsp.CodeActionContext(diagnostics=list(diagnostics)),
        )
    )
    return list(result or [])


async def run_command(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=command, arguments=list(arguments))
    )
