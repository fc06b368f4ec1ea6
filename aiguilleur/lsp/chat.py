"""LSP wiring of chat: the `aiguilleur.chat` and `aiguilleur.chat.new` commands, and the
code actions that run them (Send in a chat document; Explain / Ask on a selection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from aiguilleur.config.homes import data_dir
from aiguilleur.features.chat import ChatError, parse, write_new_chat
from aiguilleur.features.uris import path_of
from aiguilleur.lsp.positions import position_at, selected_lines
from aiguilleur.routing.route_loop import NoRoute

if TYPE_CHECKING:
    from aiguilleur.lsp.session import Session

log = logging.getLogger(__name__)

CHAT_COMMAND = "aiguilleur.chat"
NEW_CHAT_COMMAND = "aiguilleur.chat.new"
EXPLAIN = "Explain this code."


class NewChat(msgspec.Struct, frozen=True):
    uri: str
    start_line: int = 0
    end_line: int = -1
    question: str = ""


def is_chat(text: str) -> bool:
    return "<!-- aiguilleur chat;" in text[:2000]


def chat_actions(uri: str, text: str, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    """Send in a chat document; Explain and Ask on code. Both are commands: they stream."""
    if is_chat(text):
        cmd = lsp.Command("aiguilleur: Send", CHAT_COMMAND, arguments=[uri])
        return [lsp.CodeAction("aiguilleur: Send", kind=lsp.CodeActionKind.Empty, command=cmd)]
    start, end = selected_lines(params.range)
    out = []
    for title, question in (("Explain", EXPLAIN), ("Ask about this code", "")):
        arg = msgspec.to_builtins(NewChat(uri, start, end, question))
        cmd = lsp.Command(f"aiguilleur: {title}", NEW_CHAT_COMMAND, arguments=[arg])
        out.append(lsp.CodeAction(cmd.title, kind=lsp.CodeActionKind.Empty, command=cmd))
    return out


def register(server: LanguageServer, session: Session) -> None:
    feature = session.chat

    def text_of(uri: str) -> str:
        doc = server.workspace.text_documents.get(uri)
        if doc is not None:
            return str(doc.source)
        try:
            return Path(path_of(uri)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise JsonRpcInvalidParams(f"cannot read {uri}: {error}") from error

    async def with_progress(title: str, work: Any) -> Any:
        """Run `work` with a cancellable progress bar; `$/cancelRequest` cancels it too."""
        protocol = server.protocol
        with contextlib.suppress(AttributeError):
            protocol.cancellable_here()  # type: ignore[attr-defined]
        token = None
        window = server.client_capabilities.window
        if window and window.work_done_progress:
            token = f"aiguilleur-chat-{uuid.uuid4().hex[:8]}"
            try:
                await server.work_done_progress.create_async(token)
                server.work_done_progress.begin(
                    token, lsp.WorkDoneProgressBegin(title=title, cancellable=True)
                )
            except Exception as error:  # a client may refuse: go on without a bar
                log.debug("chat.progress_failed error=%s", error)
                token = None
        task = asyncio.current_task()
        if token is not None and task is not None:
            cancelled = server.work_done_progress.tokens.get(token)
            if cancelled is not None:
                cancelled.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        message = "done"
        try:
            return await work
        except asyncio.CancelledError:
            message = "stopped"
            raise JsonRpcRequestCancelled("chat stopped") from None
        except (ChatError, NoRoute) as error:
            message = "no answer"
            session.show(f"aiguilleur: {error}")
            raise JsonRpcInternalError(str(error)) from error
        finally:
            if token is not None:
                server.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message))

    @server.command(CHAT_COMMAND)
    async def send(ls: LanguageServer, *args: Any) -> Any:
        await session.ready()
        uri = args[0] if args and isinstance(args[0], str) else None
        if uri is None and args and isinstance(args[0], dict):
            uri = args[0].get("uri")
        if not isinstance(uri, str):
            raise JsonRpcInvalidParams("aiguilleur.chat needs the chat document's URI")
        answer = await with_progress("aiguilleur chat", feature.send(uri, text_of(uri)))
        return {"model": answer.model, "cost_usd": answer.usage.cost_usd}

    @server.command(NEW_CHAT_COMMAND)
    async def new(ls: LanguageServer, *args: Any) -> Any:
        await session.ready()
        raw = args[0] if args else None
        if not raw:  # Helix's :lsp-workspace-command has no way to name the document
            last = session.completion.last_uri
            if last is None:
                raise JsonRpcInvalidParams("open a file and type in it first, then start a chat")
            raw = {"uri": last}
        try:
            req = msgspec.convert(raw, NewChat)
        except (msgspec.ValidationError, TypeError) as error:
            raise JsonRpcInvalidParams(f"aiguilleur.chat.new: {error}") from error
        cfg = session.policy.chat
        directory = Path(cfg.dir).expanduser() if cfg.dir else data_dir() / "chats"
        source = text_of(req.uri)
        try:
            chat = write_new_chat(
                directory, req.uri, source, req.start_line, req.end_line, req.question
            )
        except ChatError as error:
            raise JsonRpcInternalError(str(error)) from error
        uri, text = chat.path.as_uri(), chat.text
        at = position_at(text, chat.cursor, session.encoding())
        shown = lsp.ShowDocumentParams(uri, take_focus=True, selection=lsp.Range(at, at))
        await server.window_show_document_async(shown)
        if req.question and parse(text).messages[-1].role == "user":
            await with_progress("aiguilleur chat", feature.send(uri, text_of(uri)))
        return {"uri": uri}
