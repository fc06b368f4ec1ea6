"""A chat answer streamed into its document, against a fake editor that applies each edit
after a while (as a real one answers workspace/applyEdit)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from aiguilleur.features.chat import ChatFeature
from aiguilleur.types import Answer, ChatMessage, RequestKind, Usage
from tests.support.needs import Editor, NoRoutes, needs

CHAT = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nTalk.\n"


class SlowEditor:
    """Applies an edit `delay_s` after it was sent, whether or not the sender still waits
    for the answer (a workspace/applyEdit request, once sent, is the editor's to apply);
    `streaming` is set while an edit of the answer's words is on its way."""

    def __init__(self, text: str, delay_s: float) -> None:
        self.text = text
        self.delay_s = delay_s
        self.streaming = asyncio.Event()

    async def apply(self, uri: str, base: str, start: int, end: int, new: str) -> bool:
        assert self.text == base, "an edit computed against a text the editor no longer has"
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def applied() -> None:
            self.text = self.text[:start] + new + self.text[end:]
            if not done.done():
                done.set_result(True)

        asyncio.get_running_loop().call_later(self.delay_s, applied)
        if "word" in new:
            self.streaming.set()
        return await done


class EndlessAnswer(NoRoutes):
    """A chat route that streams words until it is stopped."""

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        assert on_text is not None
        while True:
            on_text("word ")
            await asyncio.sleep(0.01)
        return Answer("", "route", "model", Usage())  # pragma: no cover


async def test_stopping_while_an_edit_is_on_its_way_keeps_the_document_in_order() -> None:
    editor = SlowEditor(CHAT, delay_s=0.05)
    feature = ChatFeature(needs(EndlessAnswer(), editor=Editor(editor.apply)))
    sending = asyncio.ensure_future(feature.send("file:///c.md", CHAT))
    await editor.streaming.wait()  # an edit with words in it: the editor has not answered
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    text = editor.text
    assert "word" in text
    # The words stay in the answer, above the mark; the user's new turn is empty.
    assert text.rstrip().endswith("*(stopped)*\n\n## You"), text
    assert text.index("word") < text.index("*(stopped)*")
