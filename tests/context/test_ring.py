"""What reaches the model besides the cursor window: chunks of the other files the user
opened, left, or edited, oldest first so that the prompt keeps a stable prefix."""

from __future__ import annotations

import msgspec

from aiguilleur.config.settings import Config
from aiguilleur.features.completion import CompletionFeature
from aiguilleur.features.text import line_bounds
from aiguilleur.types import Completion, Request, Usage
from tests.support.needs import Docs, NoRoutes, needs

A = "file:///w/a.py"
B = "file:///w/b.py"


def numbered(name: str, n: int) -> str:
    return "".join(f"{name}_{i} = {i}\n" for i in range(n))


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Completion | None:
        self.requests.append(request)
        return Completion("x", Usage(), route="local", model="m")


class Routes(NoRoutes):
    """Completions go to `record`."""

    def __init__(self, record: Recorder) -> None:
        self.record = record

    async def complete(self, request: Request) -> Completion | None:
        return await self.record(request)


async def suggest(feature: CompletionFeature, uri: str, docs: Docs, line: int) -> None:
    bounds = line_bounds(docs[uri], line)
    assert bounds is not None
    await feature.suggest(uri, docs[uri], 1, bounds[0])


async def test_an_edit_in_another_file_brings_that_place_into_the_prompt() -> None:
    docs = Docs({A: numbered("a", 300), B: numbered("b", 300)})
    record = Recorder()
    feature = CompletionFeature(needs(Routes(record), docs=docs))
    feature.note_open(A, docs[A])
    feature.note_open(B, docs[B])
    await suggest(feature, A, docs, 10)

    # The user goes to b.py and edits line 200 without asking for a suggestion there.
    lines = docs[B].splitlines(keepends=True)
    lines[200] = "b_200 = compute_the_answer()\n"
    docs[B] = "".join(lines)
    feature.note_change(B, 200)

    await suggest(feature, A, docs, 12)
    extra = record.requests[-1].context.extra
    assert [c.path for c in extra][-1] == "/w/b.py"
    assert "compute_the_answer" in extra[-1].text
    assert all(c.path != "/w/a.py" for c in extra)  # the cursor's own file is not repeated


async def test_the_ring_keeps_its_order_while_the_user_types_in_one_file() -> None:
    docs = Docs({A: numbered("a", 50), B: numbered("b", 50)})
    record = Recorder()
    feature = CompletionFeature(needs(Routes(record), docs=docs))
    feature.note_open(A, docs[A])
    feature.note_open(B, docs[B])
    for line in range(5):
        feature.note_change(A, line)
        await suggest(feature, A, docs, line)
    seen = {tuple(c.text for c in r.context.extra) for r in record.requests}
    assert len(seen) == 1  # a stable prefix: the KV cache of the extra context stays valid


async def test_settings_that_arrive_after_start_size_the_ring() -> None:
    # The editor's settings (initializationOptions) and the workspace file are read after
    # the feature is built; a user who turns the extra context off gets none.
    docs = Docs({A: numbered("a", 300), B: numbered("b", 300)})
    record = Recorder()
    settings = {"now": Config()}
    feature = CompletionFeature(needs(Routes(record), lambda: settings["now"], docs))
    feature.note_open(A, docs[A])
    settings["now"] = msgspec.convert({"completion": {"extra_chunks": 0}}, Config)
    feature.note_open(B, docs[B])
    await suggest(feature, B, docs, 10)
    assert record.requests[-1].context.extra == ()
    # Turned back on, with smaller chunks: the next file's chunk has that many lines.
    settings["now"] = msgspec.convert(
        {"completion": {"extra_chunks": 4, "extra_chunk_lines": 8}}, Config
    )
    feature.note_open(A, docs[A])
    await suggest(feature, B, docs, 20)  # elsewhere: line 10's suggestion would be reused
    [chunk] = record.requests[-1].context.extra
    assert chunk.path == "/w/a.py" and chunk.text.count("\n") == 8
