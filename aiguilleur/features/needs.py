"""What every feature is built with: one typed object, the same for each (FeatureNeeds).

A feature reads its own section of the session's settings (`needs.settings.policy`), sends
its requests through the session's routes, reads the documents the editor has open and
asks the editor connection for the little it needs of it. lsp/session.py builds one
FeatureNeeds per editor connection, and every feature from it; a command or a test builds
its own from plain objects (commands/complete.py, tests/support/needs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from aiguilleur.config.settings import Config
from aiguilleur.context.index import RepositoryIndex
from aiguilleur.types import (
    Answer,
    ChatMessage,
    Completion,
    Quote,
    Request,
    RequestKind,
    SuggestionOutcome,
)


class Outcomes(Protocol):
    """Where what became of each suggestion shown goes (remote/acceptance.AcceptanceLog)."""

    def record(self, outcome: SuggestionOutcome) -> None: ...


class Settings(Protocol):
    """The session's settings, every layer merged: read at each use, as they change."""

    @property
    def policy(self) -> Config: ...


class Routes(Protocol):
    """Where the session's requests go, under its policy (routing/route_loop.SessionRoutes)."""

    async def complete(self, request: Request) -> Completion | None: ...

    async def prefetch(self, request: Request) -> Completion | None: ...

    def local_first(self, request: Request) -> bool:
        """Whether the local engine is the first route for `request` (loaded or not)."""
        ...

    async def prefill(self, request: Request) -> bool:
        """Evaluate the head of `request`'s prompt while the engine is idle; whether all
        of it is in the engine's cache now."""
        ...

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer: ...

    def paid_first(self, kind: RequestKind, path: str) -> bool:
        """Whether a request of `kind` about `path` would go to a paid route first."""
        ...

    async def quote(
        self, kind: RequestKind, path: str, messages: list[ChatMessage], max_tokens: int
    ) -> Quote | None:
        """What `messages` would cost, told before they are sent (None: nothing to pay)."""
        ...


class Documents(Protocol):
    """The documents as the editor has them open."""

    def text(self, uri: str) -> str | None: ...

    def version(self, uri: str) -> int | None: ...


class Editor(Protocol):
    """What a feature asks of the editor connection (lsp/session.py)."""

    @property
    def workspace_root(self) -> Path | None: ...

    @property
    def index(self) -> RepositoryIndex | None:
        """The workspace's repository index, once opened (None: no workspace, or the
        index is off)."""
        ...

    async def replace(self, uri: str, base: str, start: int, end: int, text: str) -> bool:
        """Replace base[start:end] of document `uri` with `text`, `base` being the
        document's text as the feature left it; whether the editor applied it."""
        ...


class NoEditor:
    """The editor of a caller that has none (a command line): no workspace, no edits."""

    workspace_root: Path | None = None
    index: RepositoryIndex | None = None

    async def replace(self, uri: str, base: str, start: int, end: int, text: str) -> bool:
        return False


class FeatureNeeds(msgspec.Struct, frozen=True):
    settings: Settings
    routes: Routes
    documents: Documents
    editor: Editor
    # Where what became of each suggestion goes (None: not kept).
    outcomes: Outcomes | None = None
