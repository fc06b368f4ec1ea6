"""Code actions in lines and str offsets, with a fake model: what is offered where, and
that an edit replaces exactly the selected lines of the text it was computed for."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aiguilleur.features.actions import ActionKind, ActionsFeature, Problem, StaleEdit
from aiguilleur.types import Answer, ChatMessage, RequestKind, Usage
from tests.support.needs import NoRoutes, needs

URI = "file:///w/m.py"
TEXT = "import os\r\n\r\n# use a loop\r\ndef f(x):\r\n    return x\r\n\r\nz = 1"


class Routes(NoRoutes):
    """Answers every code action with `reply`, and keeps the prompts it was asked."""

    def __init__(self, reply: str) -> None:
        self.reply, self.asked = reply, list[list[ChatMessage]]()

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        assert kind is RequestKind.CODE_ACTION
        self.asked.append(messages)
        return Answer(self.reply, route="r", model="m", usage=Usage())


def feature(reply: str) -> tuple[ActionsFeature, Routes]:
    routes = Routes(reply)
    return ActionsFeature(needs(routes)), routes


def test_offers_follow_the_selection_and_the_problems_on_it() -> None:
    actions, _ = feature("")
    far = Problem("unused import", 0, 0)
    near = Problem("x is unused", 4, 4)
    offers = actions.list(URI, TEXT, 3, 3, 4, [far, near])
    assert [(o.title, o.kind) for o in offers] == [
        ("Fix: x is unused", ActionKind.FIX),
        ("Rewrite: use a loop", ActionKind.REWRITE),
        ("Document this code", ActionKind.REWRITE),
        ("Write tests", ActionKind.REFACTOR),
    ]
    assert offers[0].data.diagnostics == ["x is unused"]
    assert actions.list(URI, TEXT, 3, 99, 99, []) == []  # a stale selection: nothing


async def test_an_edit_replaces_the_selected_lines_and_keeps_the_files_line_ends() -> None:
    actions, routes = feature("```python\ndef f(x):\n    return x * 2\n```")
    [rewrite, *_] = actions.list(URI, TEXT, 3, 3, 4, [])
    edit, _ = await actions.edit(rewrite.data, TEXT, lambda: 3)
    assert "use a loop" in routes.asked[0][-1].content  # the instruction, in the prompt
    assert edit.base is TEXT and edit.version == 3
    assert TEXT[edit.start : edit.end] == "def f(x):\r\n    return x\r\n"
    applied = TEXT[: edit.start] + edit.new_text + TEXT[edit.end :]
    # The model answers in `\n`; the file keeps its `\r\n`.
    assert applied == TEXT.replace("return x", "return x * 2")


async def test_an_edit_of_the_last_line_ends_at_the_end_of_the_text() -> None:
    actions, _ = feature("z = 2")
    [*_, document, _] = actions.list(URI, TEXT, 3, 6, 6, [])
    edit, _ = await actions.edit(document.data, TEXT, lambda: 3)
    assert (edit.start, edit.end, edit.new_text) == (len(TEXT) - 5, len(TEXT), "z = 2")


async def test_an_edit_for_an_older_version_is_refused() -> None:
    actions, routes = feature("z = 2")
    [*_, document, _] = actions.list(URI, TEXT, 3, 6, 6, [])
    with pytest.raises(StaleEdit):
        await actions.edit(document.data, TEXT, lambda: 4)
    assert routes.asked == []
