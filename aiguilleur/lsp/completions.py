"""LSP wiring of completions: the documents as the editor changes them (they feed the
ring and the prefill), `textDocument/inlineCompletion` (ghost text), `textDocument/completion`
(a menu item) and `aiguilleur/lastCompletion` (what was shown last, for tests and benches)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from aiguilleur.errors import Cancelled
from aiguilleur.features.completion import Suggestion
from aiguilleur.lsp.chat import is_chat
from aiguilleur.lsp.positions import chars_to_units, offset_at, position_at
from aiguilleur.lsp.session import Session

log = logging.getLogger(__name__)

LAST_COMPLETION = "aiguilleur/lastCompletion"
# Run by the editor when the user accepts a suggestion (VS Code and Neovim run an item's
# command); arguments: the suggestion's id, and how many of its characters were taken
# when only a part was (Neovim's word and line keys).
ACCEPTED_COMMAND = "aiguilleur.accepted"


def accepted_command(s: Suggestion) -> lsp.Command:
    return lsp.Command("aiguilleur: accepted", ACCEPTED_COMMAND, arguments=[s.shown_id])


def register(server: LanguageServer, session: Session) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        session.completion.note_open(doc.uri, doc.text, chat=is_chat(doc.text))
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
        doc = server.workspace.text_documents.get(params.text_document.uri)
        text = None if doc is None else doc.source
        session.completion.note_change(params.text_document.uri, line, text)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        session.completion.forget(params.text_document.uri)

    async def suggest(uri: str, position: lsp.Position) -> tuple[Suggestion, lsp.Range] | None:
        """The suggestion at `position`, with the range of the word before the cursor (a
        menu item replaces it) ending at the cursor."""
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            return None  # never opened: we only complete what the editor shows
        if not await session.ready():
            return None  # the client never sent `initialized`
        text, encoding = doc.source, session.encoding()
        offset = offset_at(text, position.line, position.character, encoding)
        if offset is None:
            return None  # a line past the end: the request is stale
        try:
            s = await session.completion.suggest(uri, text, doc.version, offset)
        except Cancelled as error:  # the engine stopped it (shutdown): say so, like a cancel
            raise JsonRpcRequestCancelled(f"completion cancelled: {error}") from error
        if s is None:
            return None
        if not s.typed_through:
            session.log_paid(s.model, s.route, s.usage)
        cursor = position_at(text, s.offset, encoding)
        word_units = chars_to_units(s.word, encoding)
        return s, lsp.Range(lsp.Position(cursor.line, cursor.character - word_units), cursor)

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: LanguageServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList:
        found = await suggest(params.text_document.uri, params.position)
        if found is None or not found[0].text:
            return lsp.InlineCompletionList(items=[])
        s, word = found
        at = lsp.Range(word.end, word.end)
        item = lsp.InlineCompletionItem(insert_text=s.text, range=at, command=accepted_command(s))
        return lsp.InlineCompletionList(items=[item])

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(resolve_provider=False))
    async def completion(ls: LanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        found = await suggest(params.text_document.uri, params.position)
        items = [] if found is None or not found[0].text else [completion_item(*found)]
        # Incomplete: the client asks again as the user types, and typing through the
        # suggestion is answered without the model.
        return lsp.CompletionList(is_incomplete=True, items=items)

    @server.command(ACCEPTED_COMMAND)
    def accepted(ls: LanguageServer, *args: Any) -> Any:
        shown_id = args[0] if args else None
        chars = args[1] if len(args) > 1 else None
        if not isinstance(shown_id, int) or not isinstance(chars, int | None):
            raise JsonRpcInvalidParams(f"{ACCEPTED_COMMAND} takes a suggestion id [, chars]")
        known = session.completion.acceptance.reported(shown_id, chars)
        log.info("suggestion.accepted id=%s chars=%s known=%s", shown_id, chars, known)
        return {"known": known}

    @server.feature(LAST_COMPLETION)
    def last_completion(ls: LanguageServer, params: Any) -> Any:
        uri = getattr(params, "uri", None) or ""
        s = session.completion.last.get(uri)
        return None if s is None else msgspec.to_builtins(s)


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
        command=accepted_command(s),
    )
