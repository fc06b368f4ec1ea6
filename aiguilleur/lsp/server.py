"""Wiring: LSP methods to features. Handlers translate LSP to aiguilleur types and back."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import msgspec
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from aiguilleur import __version__
from aiguilleur.config.loading import as_settings
from aiguilleur.errors import Cancelled
from aiguilleur.features.completion import Suggestion
from aiguilleur.features.uris import path_of
from aiguilleur.lsp import action_commands, chat_commands
from aiguilleur.lsp.positions import chars_to_units, offset_at, position_at
from aiguilleur.lsp.protocol import AiguilleurProtocol, AiguilleurServer
from aiguilleur.lsp.session import Session
from aiguilleur.routing.runtime import Runtime

log = logging.getLogger(__name__)

USAGE_COMMAND = "aiguilleur.usage"

LAST_COMPLETION = "aiguilleur/lastCompletion"
STATUS = "aiguilleur/status"


class LastCompletionParams(msgspec.Struct):
    uri: str


def _doc_path(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    return Path(path_of(uri))


def build_server(
    user_config: Path | None = None,
    shared: Runtime | None = None,
    protocol: type[AiguilleurProtocol] = AiguilleurProtocol,
) -> tuple[LanguageServer, Session]:
    """The LSP server for one editor connection, and its session. Standalone, the
    session builds its runtime (the caller closes it once the connection is over);
    with `shared`, it runs over a daemon's runtime, which outlives it."""
    server = AiguilleurServer("aiguilleur", __version__, protocol_cls=protocol)
    session = Session(server, user_config, shared)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: LanguageServer, params: lsp.InitializeParams) -> None:
        root = _doc_path(params.root_uri)
        if root is None and params.workspace_folders:
            root = _doc_path(params.workspace_folders[0].uri)
        session.layers.workspace_root = root
        session.layers.init_options = as_settings(params.initialization_options)
        loaded = session.load_config()
        if not session.shared:  # standalone: this window's settings are the runtime's too
            session.runtime.config = loaded.config

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: LanguageServer, params: lsp.InitializedParams) -> None:
        session.show_config_problems()
        session.tell_if_runtime_settings_differ()
        await session.start_runtime()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: LanguageServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        session.layers.client_settings = as_settings(params.settings)
        log.info("config.changed_by_editor tables=%s", sorted(session.layers.client_settings))
        await session.apply_config()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        session.completion.note_open(doc.uri, doc.text, chat=chat_commands.is_chat(doc.text))
        request = session.completion.prefill_request(doc.uri, doc.text)
        if request is not None:
            session.runtime.prefill(request)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        # pygls has already applied the change to its copy of the document.
        line = None
        for change in params.content_changes:
            if isinstance(change, lsp.TextDocumentContentChangePartial):
                line = change.range.start.line
        session.completion.note_change(params.text_document.uri, line, session.documents)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        session.completion.forget(params.text_document.uri)

    async def suggest(uri: str, position: lsp.Position) -> tuple[Suggestion, lsp.Range] | None:
        """The suggestion at `position`, with the range of the word before the cursor (a
        menu item replaces it) ending at the cursor."""
        doc = ls_docs().get(uri)
        if doc is None:
            return None  # never opened: we only complete what the editor shows
        if not await session.ready():
            return None  # the client never sent `initialized`
        text, encoding = doc.source, session.encoding()
        offset = offset_at(text, position.line, position.character, encoding)
        if offset is None:
            return None  # a line past the end: the request is stale
        try:
            s = await session.completion.suggest(uri, text, doc.version, offset, session.documents)
        except Cancelled as error:  # the engine stopped it (shutdown): say so, like a cancel
            raise JsonRpcRequestCancelled(f"completion cancelled: {error}") from error
        if s is None:
            return None
        if not s.typed_through:
            session.log_paid(s.model, s.route, s.usage)
        cursor = position_at(text, s.offset, encoding)
        word_units = chars_to_units(s.word, encoding)
        return s, lsp.Range(lsp.Position(cursor.line, cursor.character - word_units), cursor)

    def ls_docs() -> dict[str, Any]:
        docs: dict[str, Any] = server.workspace.text_documents
        return docs

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: LanguageServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList:
        found = await suggest(params.text_document.uri, params.position)
        if found is None or not found[0].text:
            return lsp.InlineCompletionList(items=[])
        s, word = found
        at = lsp.Range(word.end, word.end)
        return lsp.InlineCompletionList(
            items=[lsp.InlineCompletionItem(insert_text=s.text, range=at)]
        )

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(resolve_provider=False))
    async def completion(ls: LanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        found = await suggest(params.text_document.uri, params.position)
        items = [] if found is None or not found[0].text else [completion_item(*found)]
        # Incomplete: the client asks again as the user types, and typing through the
        # suggestion is answered without the model.
        return lsp.CompletionList(is_incomplete=True, items=items)

    @server.feature(LAST_COMPLETION)
    def last_completion(ls: LanguageServer, params: Any) -> Any:
        uri = getattr(params, "uri", None) or ""
        s = session.completion.last.get(uri)
        return None if s is None else msgspec.to_builtins(s)

    @server.feature(STATUS)
    def status(ls: LanguageServer, params: Any) -> Any:
        rt = session.runtime
        return {
            "model": msgspec.to_builtins(rt.model_info) if rt.model_info else None,
            "model_problem": rt.load_error,
            "engine": msgspec.to_builtins(rt.engine.stats()) if rt.engine else None,
            "kv": msgspec.to_builtins(kv) if (kv := rt.kv_stats()) else None,
            "models": msgspec.to_builtins(rt.model_loads()),
            "config_sources": list(session.loaded.sources),
            "config_problems": [p.describe() for p in session.loaded.problems],
            "workspace_trust": session.loaded.trust.value,
            "ignored_untrusted": [i.describe() for i in session.loaded.ignored],
            # Which process answers: a daemon's is the same for every window.
            "pid": os.getpid(),
            "shared": session.shared,
        }

    action_commands.register(server, session, ls_docs)

    @server.command(USAGE_COMMAND)
    async def usage_command(ls: LanguageServer, *args: Any) -> Any:
        from aiguilleur.config.homes import data_dir
        from aiguilleur.remote.usage import report

        r = await asyncio.to_thread(report, session.runtime.config, data_dir() / "ledger.db", 30)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        spent_today = sum(row.cost_usd for row in r.rows if row.day == today)
        left = "; ".join(f"{b.key} {b.period}: ${b.left_usd:.2f} left" for b in r.budgets)
        if args and isinstance(args[0], dict) and args[0].get("quiet"):
            return msgspec.to_builtins(r)  # a status bar polling: no message
        session.show(
            f"aiguilleur: ${spent_today:.4f} spent today, ${r.total_usd:.4f} in 30 days"
            + (f"; {left}" if left else "")
            + " (`aiguilleur usage` for the details)",
            lsp.MessageType.Info,
        )
        return msgspec.to_builtins(r)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: LanguageServer, params: Any) -> None:
        # Answered at once: the engine stops taking work and saves its live KV state on
        # its own thread; `serve` waits for that and for the disk writes after `exit`.
        if not session.shared:  # a daemon's engine serves other windows still
            session.runtime.stop()

    chat_commands.register(server, session)
    return server, session


def completion_item(s: Suggestion, word: lsp.Range) -> lsp.CompletionItem:
    full = s.word + s.text
    first = full.split("\n", 1)[0]
    multi = "\n" in s.text
    label = first.strip() or full.strip().split("\n", 1)[0]
    if len(label) > 60:
        label = label[:57] + "..."
    if multi:
        label += " …"
    return lsp.CompletionItem(
        label=label,
        kind=lsp.CompletionItemKind.Text,
        detail=f"aiguilleur · {s.model}",
        documentation=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=f"```\n{full}\n```"),
        filter_text=first,
        sort_text="0",
        preselect=True,
        insert_text_format=lsp.InsertTextFormat.PlainText,
        text_edit=lsp.TextEdit(range=word, new_text=full),
    )
