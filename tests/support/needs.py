"""What a feature is built with (features/needs.py), from plain objects: tests of the
features run without an editor, a server or a model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiguilleur.config.settings import Config
from aiguilleur.context.index import RepositoryIndex
from aiguilleur.features.needs import FeatureNeeds, NoEditor, Routes
from aiguilleur.types import Answer, ChatMessage, Completion, Quote, Request, RequestKind


class NoRoutes:
    """Routes that answer nothing: a test's fake overrides what its feature asks."""

    async def complete(self, request: Request) -> Completion | None:
        return None

    async def prefetch(self, request: Request) -> Completion | None:
        return None

    async def prefill(self, request: Request) -> bool:
        return False

    def local_first(self, request: Request) -> bool:
        return True

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        raise AssertionError(f"this fake answers no {kind}")

    def paid_first(self, kind: RequestKind, path: str) -> bool:
        return False

    async def quote(
        self, kind: RequestKind, path: str, messages: list[ChatMessage], max_tokens: int
    ) -> Quote | None:
        return None


class Docs(dict[str, str]):
    """Open documents, all at version 1."""

    def text(self, uri: str) -> str | None:
        return self.get(uri)

    def version(self, uri: str) -> int | None:
        return 1 if uri in self else None


class Settings:
    """The session's settings, as `now()` gives them at each use."""

    def __init__(self, now: Callable[[], Config] = Config) -> None:
        self.now = now

    @property
    def policy(self) -> Config:
        return self.now()


class Editor(NoEditor):
    """An editor that applies each replacement with `apply`."""

    def __init__(
        self,
        apply: Callable[[str, str, int, int, str], Awaitable[bool]],
        workspace_root: Path | None = None,
        index: RepositoryIndex | None = None,
    ) -> None:
        self.apply, self.workspace_root, self.index = apply, workspace_root, index

    async def replace(self, uri: str, base: str, start: int, end: int, text: str) -> bool:
        return await self.apply(uri, base, start, end, text)


def needs(
    routes: Routes,
    settings: Callable[[], Config] = Config,
    docs: Docs | None = None,
    editor: NoEditor | None = None,
) -> FeatureNeeds:
    return FeatureNeeds(
        settings=Settings(settings),
        routes=routes,
        documents=docs if docs is not None else Docs(),
        editor=editor or NoEditor(),
    )
