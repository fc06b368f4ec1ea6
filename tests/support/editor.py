"""A test client that acts as an editor: it applies `workspace/applyEdit` to its copy of
the documents and reports `didChange`, as editors do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from aiguilleur.lsp.positions import offset_at


class Editor:
    """The documents as the editor holds them, kept in step with the server's edits."""

    def __init__(self, client: Any, encoding: str = "utf-8") -> None:
        self.client = client
        self.encoding = encoding
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.edits = 0
        # Each document's text after each edit, oldest first (its opening text first).
        self.history: dict[str, list[str]] = {}

        @client.feature(lsp.WORKSPACE_APPLY_EDIT)
        def _apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            for uri, edits in (params.edit.changes or {}).items():
                for e in edits:
                    self._edit(uri, e)
            self.edits += 1
            return lsp.ApplyWorkspaceEditResult(applied=True)

        # `window/showDocument` is answered by pytest-lsp (recorded in shown_documents);
        # an edit to a document this editor has not opened yet opens it, as editors do.

    def open(self, uri: str, text: str) -> None:
        self.texts[uri], self.versions[uri] = text, 1
        self.history[uri] = [text]
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "markdown", 1, text))
        )

    def _edit(self, uri: str, e: lsp.TextEdit) -> None:
        if uri not in self.texts:
            self.open(uri, Path(uri.removeprefix("file://")).read_text())
        text = self.texts[uri]
        # Positions count in the negotiated encoding (utf-8 with the neovim preset).
        a = offset_at(text, e.range.start.line, e.range.start.character, self.encoding)
        b = offset_at(text, e.range.end.line, e.range.end.character, self.encoding)
        assert a is not None and b is not None, (e, text)
        self.texts[uri] = text[:a] + e.new_text + text[b:]
        self.history[uri].append(self.texts[uri])
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=self.versions[uri], uri=uri),
                [lsp.TextDocumentContentChangePartial(range=e.range, text=e.new_text)],
            )
        )
