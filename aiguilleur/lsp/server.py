"""Wiring, in one place: one server per editor connection, its session (which builds the
features from one FeatureNeeds), and each handler module's `register`. Handlers are thin:
they translate LSP to the features' text-and-offset calls and back."""

from __future__ import annotations

from pathlib import Path

from pygls.lsp.server import LanguageServer

from aiguilleur import __version__
from aiguilleur.lsp import actions, chat, completions, lifecycle, status, workspace
from aiguilleur.lsp.protocol import AiguilleurProtocol, AiguilleurServer
from aiguilleur.lsp.session import Session
from aiguilleur.routing.runtime import Runtime

# Every handler module, each with `register(server, session)`.
HANDLERS = (lifecycle, completions, workspace, actions, chat, status)


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
    for handlers in HANDLERS:
        handlers.register(server, session)
    return server, session
