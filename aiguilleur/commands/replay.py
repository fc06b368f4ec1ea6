"""Keystroke replay: drive `aiguilleur serve` over stdio exactly as an editor does.

Used by `aiguilleur demo` (a few keystrokes, printed) and by the bench (a whole function
retyped, measured). The client is pygls' own; the server is a real subprocess.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from aiguilleur.lsp.protocol import client_process


class Keystroke(msgspec.Struct, frozen=True):
    index: int
    line: int
    character: int
    typed: str
    suggestion: str
    latency_ms: float
    prompt_tokens: int
    evaluated_tokens: int
    reused_tokens: int
    completion_tokens: int
    prompt_ms: float
    generation_ms: float
    queue_ms: float
    server_ms: float
    typed_through: bool
    answered: bool
    drafted_tokens: int = 0  # speculative decoding: tokens drafted from the context
    accepted_tokens: int = 0  # and kept
    ahead: bool = False  # answered with the suggestion computed ahead (after an accept)
    stop_reason: str = ""  # why generation ended (eog, boundary, length, time)


class ServerProcess:
    """A real `aiguilleur serve` and a pygls client connected to it over stdio."""

    def __init__(
        self,
        workspace: Path,
        env: dict[str, str] | None = None,
        init_options: dict[str, Any] | None = None,
        log_file: Path | None = None,
        serve_args: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.workspace = workspace
        # Where the server starts: `python -m aiguilleur` runs the package found there
        # first (a bench runs an older checkout's side by side this way).
        self.cwd = cwd
        # One process of its own by default: a tool's settings ([local] among them) are
        # its own, and nothing is left running after it. [] relays to the user's daemon.
        self.serve_args = ["--standalone"] if serve_args is None else serve_args
        self.env = env
        self.init_options = init_options
        self.log_file = log_file or Path(tempfile.mkstemp(prefix="aiguilleur-", suffix=".log")[1])
        self.client = LanguageClient("aiguilleur-replay", "1")
        self.version = 0
        self.messages: list[str] = []
        self.log_messages: list[str] = []
        self.applied_edits = 0

        @self.client.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)  # type: ignore[untyped-decorator]
        def _create(params: lsp.WorkDoneProgressCreateParams) -> None:
            return None

        @self.client.feature(lsp.PROGRESS)  # type: ignore[untyped-decorator]
        def _progress(params: lsp.ProgressParams) -> None:
            return None

        @self.client.feature(lsp.WINDOW_SHOW_MESSAGE)  # type: ignore[untyped-decorator]
        def _message(params: lsp.ShowMessageParams) -> None:
            self.messages.append(params.message)

        @self.client.feature(lsp.WINDOW_LOG_MESSAGE)  # type: ignore[untyped-decorator]
        def _log(params: lsp.LogMessageParams) -> None:
            self.log_messages.append(params.message)

        @self.client.feature(lsp.WORKSPACE_APPLY_EDIT)  # type: ignore[untyped-decorator]
        def _apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            # A chat streaming into a document: count the edits; nothing shows them here.
            self.applied_edits += 1
            return lsp.ApplyWorkspaceEditResult(applied=True)

    async def __aenter__(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "aiguilleur", "serve", "--log-file", str(self.log_file)]
        cmd += self.serve_args
        await self.client.start_io(*cmd, env=self.env or dict(os.environ), cwd=self.cwd)
        caps = lsp.ClientCapabilities(
            general=lsp.GeneralClientCapabilities(position_encodings=["utf-8", "utf-16"]),
            window=lsp.WindowClientCapabilities(work_done_progress=True),
        )
        await self.client.initialize_async(
            lsp.InitializeParams(
                capabilities=caps,
                root_uri=self.workspace.as_uri(),
                initialization_options=self.init_options,
                process_id=os.getpid(),
            )
        )
        self.client.initialized(lsp.InitializedParams())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 30)
            self.client.exit(None)
        except Exception:
            pass
        await self.client.stop()  # type: ignore[no-untyped-call]

    def open(self, path: Path, text: str, language: str = "python") -> str:
        uri = path.as_uri()
        self.version = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, language, 1, text))
        )
        return uri

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri))
        )

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        self.version += 1
        pos = lsp.Position(line, character)
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=self.version, uri=uri),
                [lsp.TextDocumentContentChangePartial(range=lsp.Range(pos, pos), text=text)],
            )
        )

    async def inline(self, uri: str, line: int, character: int) -> str:
        result = await self.client.text_document_inline_completion_async(
            lsp.InlineCompletionParams(
                context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
                text_document=lsp.TextDocumentIdentifier(uri),
                position=lsp.Position(line, character),
            )
        )
        if not result:
            return ""
        items = result.items if isinstance(result, lsp.InlineCompletionList) else result
        if not items:
            return ""
        text = items[0].insert_text
        return text if isinstance(text, str) else text.value

    async def last(self, uri: str) -> Any:
        return await self.client.protocol.send_request_async(
            "aiguilleur/lastCompletion", {"uri": uri}
        )

    @property
    def pid(self) -> int:
        """The process the editor started (relaying to the daemon: the shim)."""
        process = client_process(self.client)
        assert process is not None
        return int(process.pid)

    async def status(self) -> Any:
        return await self.client.protocol.send_request_async("aiguilleur/status", {})

    async def wait_ready(self, timeout: float = 600) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = await self.status()
            if s.model is not None or s.model_problem:
                return s
            await asyncio.sleep(0.1)
        raise TimeoutError("the model did not load in time")


def split_at_function(source: str, name: str) -> tuple[str, str, str]:
    """(before, body, after): `body` is the function `name` after its `def` line."""
    start = source.index(f"def {name}(")
    body_start = source.index(":\n", start) + 2
    # The body ends at the next line indented no deeper than the def.
    def_indent = start - source.rfind("\n", 0, start) - 1
    pos = body_start
    while pos < len(source):
        end = source.find("\n", pos)
        end = len(source) if end < 0 else end + 1
        line = source[pos:end]
        if line.strip() and len(line) - len(line.lstrip()) <= def_indent:
            break
        pos = end
    return source[:body_start], source[body_start:pos], source[pos:]


class TypingState(msgspec.Struct, frozen=True):
    """The document after one keystroke of a retyped function."""

    index: int
    typed: str
    text: str
    offset: int  # the cursor, a str index
    line: int
    character: int  # the cursor, in UTF-16 units


def typing_states(source: str, function: str, keystrokes: int | None = None) -> list[TypingState]:
    """Retyping the body of `function` in `source`, one character at a time."""
    before, body, after = split_at_function(source, function)
    line = before.count("\n")
    character = 0
    n = len(body) if keystrokes is None else min(keystrokes, len(body))
    states = []
    for i, ch in enumerate(body[:n]):
        if ch == "\n":
            line += 1
            character = 0
        else:
            character += len(ch.encode("utf-16-le")) // 2
        typed = before + body[: i + 1]
        states.append(TypingState(i, ch, typed + after, len(typed), line, character))
    return states


async def replay(
    server: ServerProcess,
    path: Path,
    source: str,
    function: str,
    keystrokes: int | None = None,
    every: int = 1,
) -> list[Keystroke]:
    """Open `source` without the body of `function`, then retype it keystroke by keystroke,
    asking for an inline completion after every `every` keystrokes."""
    before, _, after = split_at_function(source, function)
    uri = server.open(path, before + after)
    return await retype(server, uri, source, function, keystrokes, every)


async def retype(
    server: ServerProcess,
    uri: str,
    source: str,
    function: str,
    keystrokes: int | None = None,
    every: int = 1,
    after_each: Callable[[Keystroke], Awaitable[bool]] | None = None,
) -> list[Keystroke]:
    """Retype the body of `function` into the open document `uri` (`source` without that
    body); `after_each` is awaited after each answer, and ends the typing when it says so."""
    before, _, _ = split_at_function(source, function)
    results: list[Keystroke] = []
    prev_line, prev_char = before.count("\n"), 0
    for state in typing_states(source, function, keystrokes):
        server.insert(uri, prev_line, prev_char, state.typed)
        prev_line, prev_char = state.line, state.character
        if (state.index + 1) % every:
            continue
        line, character = state.line, state.character
        t0 = time.perf_counter()
        suggestion = await server.inline(uri, line, character)
        latency = (time.perf_counter() - t0) * 1000
        last = await server.last(uri)
        u = last.usage if last is not None else None
        keystroke = Keystroke(
            index=state.index,
            line=line,
            character=character,
            typed=state.typed,
            suggestion=suggestion,
            latency_ms=latency,
            prompt_tokens=u.prompt_tokens if u else 0,
            evaluated_tokens=u.evaluated_tokens if u else 0,
            reused_tokens=u.reused_tokens if u else 0,
            completion_tokens=u.completion_tokens if u else 0,
            prompt_ms=u.prompt_ms if u else 0.0,
            generation_ms=u.generation_ms if u else 0.0,
            queue_ms=u.queue_ms if u else 0.0,
            server_ms=last.server_ms if last is not None else 0.0,
            typed_through=bool(last.typed_through) if last is not None else False,
            answered=last is not None,
            drafted_tokens=u.drafted_tokens if u else 0,
            accepted_tokens=u.accepted_tokens if u else 0,
            stop_reason=getattr(last, "stop_reason", "") if last is not None else "",
        )
        results.append(keystroke)
        if after_each is not None and await after_each(keystroke):
            break
    return results
