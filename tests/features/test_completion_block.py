"""The completion feature puts the repository block in its requests, and a block that
cannot be built costs the suggestion its block, never the suggestion. A block proposed
for a receiver typed after it was built is prefilled while the user pauses, and becomes
the block only once the engine holds all of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.features.completion import CompletionFeature
from aiguilleur.types import Completion, ContextChunk, Request, Usage
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


STORE = "class Store:\n    def fetch_everything(self, key: str) -> bytes: ...\n\n\n"
STORE += "def open_store() -> Store: ...\n"
REPORT = "from app.store import open_store\n\n\ndef show() -> None:\n    pass\n"


class Prefilled(Captured):
    """Routes whose engine evaluates a prefill to its end when `done` says so."""

    def __init__(self, done: bool) -> None:
        super().__init__()
        self.done = done
        self.prefills: list[Request] = []

    async def prefill(self, request: Request) -> bool:
        self.prefills.append(request)
        return self.done


def _shown(chunks: tuple[ContextChunk, ...]) -> str:
    return "".join(f"{c.path}\n{c.text}" for c in chunks)


def _store(index: RepositoryIndex) -> str:
    (index.root / "app" / "store.py").write_text(STORE)
    assert index.update(index.root / "app" / "store.py")
    return (index.root / "app" / "report.py").as_uri()


@pytest.mark.parametrize("evaluated", [True, False])
async def test_a_proposed_block_is_adopted_once_the_engine_holds_it(
    index: RepositoryIndex, monkeypatch: pytest.MonkeyPatch, evaluated: bool
) -> None:
    monkeypatch.setattr("aiguilleur.features.completion.BLOCK_PROPOSAL_IDLE_S", 0.01)
    uri = _store(index)
    routes = Prefilled(evaluated)
    docs = Docs({uri: REPORT})
    feature = CompletionFeature(needs(routes, docs=docs, editor=Editor(_nothing, index=index)))
    await feature.suggest(uri, REPORT, 1, REPORT.index("pass"))
    entered = routes.requests[0].context.repository
    assert "fetch_everything" not in "".join(c.text for c in entered)
    typed = REPORT.replace("pass", "s = open_store()\n    s.")
    docs[uri] = typed
    await feature.suggest(uri, typed, 1, typed.index("s.") + 2)
    assert routes.requests[-1].context.repository == entered  # the keystroke pays nothing
    await asyncio.sleep(0.1)  # the user pauses
    [prefill] = routes.prefills
    assert "fetch_everything" in "".join(c.text for c in prefill.context.repository)
    # What the engine holds of the old block stays the head of the new one.
    assert _shown(prefill.context.repository).startswith(_shown(entered))
    await feature.suggest(uri, typed, 1, typed.index("s.") + 1)
    now = routes.requests[-1].context.repository
    assert now == (prefill.context.repository if evaluated else entered)


async def test_typing_on_before_the_pause_starts_no_prefill(
    index: RepositoryIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aiguilleur.features.completion.BLOCK_PROPOSAL_IDLE_S", 0.05)
    uri = _store(index)
    routes = Prefilled(True)
    feature = CompletionFeature(
        needs(routes, docs=Docs({uri: REPORT}), editor=Editor(_nothing, index=index))
    )
    await feature.suggest(uri, REPORT, 1, REPORT.index("pass"))
    typed = REPORT.replace("pass", "s = open_store()\n    s.")
    for n in range(4):  # a keystroke every 10 ms
        await feature.suggest(uri, typed, 1, typed.index("s.") + 2 - n % 2)
        await asyncio.sleep(0.01)
    assert routes.prefills == []
