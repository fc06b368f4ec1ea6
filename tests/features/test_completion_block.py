"""The completion feature puts the repository block in its requests, and a block that
cannot be built costs the suggestion its block, never the suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.features.completion import CompletionFeature
from aiguilleur.types import Completion, Request, Usage
from tests.support.needs import Docs, Editor, NoRoutes, needs

MODELS = "class User:\n    def rename(self, new_name: str) -> None: ...\n"
VIEW = "from app.models import User\n\n\ndef show(u: User):\n    u.\n"


class Captured(NoRoutes):
    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def complete(self, request: Request) -> Completion | None:
        self.requests.append(request)
        return Completion("rename('x')", Usage(), route="local", model="m")


async def _nothing(uri: str, base: str, start: int, end: int, text: str) -> bool:
    return False


@pytest.fixture
def index(tmp_path: Path) -> RepositoryIndex:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "models.py").write_text(MODELS)
    idx = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    idx.refresh()
    return idx


async def test_the_request_carries_the_block_and_survives_a_broken_one(
    index: RepositoryIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = (index.root / "app" / "views.py").as_uri()
    routes = Captured()
    docs = Docs({uri: VIEW})
    feature = CompletionFeature(needs(routes, docs=docs, editor=Editor(_nothing, index=index)))
    shown = await feature.suggest(uri, VIEW, 1, VIEW.index("u.") + 2)
    assert shown is not None and shown.text == "rename('x')"
    [chunk] = routes.requests[0].context.repository
    assert chunk.path == "app/models.py" and "def rename" in chunk.text

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug in retrieval")

    monkeypatch.setattr("aiguilleur.context.block.dependency_stubs", broken)
    other = VIEW.replace("def show", "def other")  # another function: the block is rebuilt
    docs[uri] = other
    shown = await feature.suggest(uri, other, 1, other.index("u.") + 2)
    assert shown is not None and shown.text == "rename('x')"
    assert routes.requests[-1].context.repository == ()
