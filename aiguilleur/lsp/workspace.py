"""LSP wiring of the files on disk: `textDocument/didSave` and
`workspace/didChangeWatchedFiles` keep the repository index in step with them."""

from __future__ import annotations

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from aiguilleur.lsp.session import Session


def register(server: LanguageServer, session: Session) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))
    async def did_save(ls: LanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
        await session.note_saved(params.text_document.uri)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def did_change_watched_files(
        ls: LanguageServer, params: lsp.DidChangeWatchedFilesParams
    ) -> None:
        for change in params.changes:
            await session.note_saved(change.uri)
