"""LSP wiring of a connection's life: `initialize` (the workspace and the editor's
settings), `initialized` (the runtime starts), `workspace/didChangeConfiguration`, and
`shutdown`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from aiguilleur.config.loading import as_settings
from aiguilleur.features.uris import path_of
from aiguilleur.lsp.session import Session

log = logging.getLogger(__name__)


def _doc_path(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    return Path(path_of(uri))


def register(server: LanguageServer, session: Session) -> None:
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
        await session.start_index()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: LanguageServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        session.layers.client_settings = as_settings(params.settings)
        log.info("config.changed_by_editor tables=%s", sorted(session.layers.client_settings))
        await session.apply_config()

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: LanguageServer, params: Any) -> None:
        # Answered at once: the engine stops taking work and saves its live KV state on
        # its own thread; `serve` waits for that and for the disk writes after `exit`.
        if not session.shared:  # a daemon's engine serves other windows still
            session.runtime.stop()
