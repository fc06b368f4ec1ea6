"""Chat documents: a markdown file is the conversation; answers stream into it.

The format, readable and writable by hand:

    # Chat: add() in m.py
    <!-- aiguilleur chat; about: /path/to/m.py -->

    ## You

    What does this do?

    ## aiguilleur · vendor/model · 812 tokens · $0.0011

    It adds two numbers.

    ## You

Every `## You` section is a user turn, every `## aiguilleur` section an assistant turn.
Sending a chat sends all turns; the answer is appended to the document by successive
`workspace/applyEdit` insertions (at most about ten per second), so it appears
progressively in any editor.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from aiguilleur.errors import AnswerCut
from aiguilleur.lsp.positions import chars_to_units
from aiguilleur.lsp.sanitize import for_editor
from aiguilleur.types import Answer, ChatMessage

YOU = "## You"
BOT = "## aiguilleur"
_ABOUT = re.compile(r"<!-- aiguilleur chat; about: (?P<path>.*?) -->")

SYSTEM = (
    "You are a programming assistant inside the user's editor. Answer precisely and "
    "briefly, in markdown, with code in fenced blocks."
)


class ChatTurns(msgspec.Struct, frozen=True):
    about: str  # the file the chat is about: its privacy rules apply
    messages: list[ChatMessage]


def parse(text: str) -> ChatTurns:
    about_match = _ABOUT.search(text)
    about = about_match["path"] if about_match else ""
    messages: list[ChatMessage] = [ChatMessage("system", SYSTEM)]
    role: str | None = None
    lines: list[str] = []

    def flush() -> None:
        body = "\n".join(lines).strip()
        if role is not None and body:
            messages.append(ChatMessage(role, body))

    for line in text.split("\n"):
        if line.startswith(YOU):
            flush()
            role, lines = "user", []
        elif line.startswith(BOT):
            flush()
            role, lines = "assistant", []
        else:
            lines.append(line)
    flush()
    return ChatTurns(about, messages)


def new_chat_text(title: str, about: str, question: str, code: str, language: str) -> str:
    block = f"\n\n```{language.lower()}\n{code}\n```" if code else ""
    return (
        f"# Chat: {title}\n<!-- aiguilleur chat; about: {about} -->\n\n{YOU}\n\n{question}{block}\n"
    )


def chat_path(directory: Path, about: str) -> Path:
    stem = Path(about).stem or "chat"
    return directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}.md"


def answer_heading(model: str, tokens: int, cost_usd: float) -> str:
    cost = f" · ${cost_usd:.4f}" if cost_usd else ""
    return f"{BOT} · {model} · {tokens} tokens{cost}"


def ready_for_answer(text: str) -> bool:
    """The last turn is the user's and has something in it."""
    turns = parse(text).messages
    return len(turns) > 1 and turns[-1].role == "user"


class ChatError(Exception):
    """Something the user can fix (the message says what)."""


InsertEdit = Callable[[str, int, int, int, int, str], Awaitable[bool]]
Ask = Callable[[str, list[ChatMessage], Callable[[str], None]], Awaitable[Answer]]

FLUSH_S = 0.1  # about ten edits a second at most


class ChatFeature:
    """Sends a chat document and streams the answer into it."""

    def __init__(self, apply: InsertEdit, ask: Ask, encoding: Callable[[], str]) -> None:
        self._apply = apply  # (uri, start_line, start_units, end_line, end_units, text)
        self._ask = ask
        self._encoding = encoding

    async def send(self, uri: str, text: str) -> Answer:
        if not ready_for_answer(text):
            raise ChatError(
                f"nothing to send: write your question under the last '{YOU}' heading first"
            )
        turns = parse(text)
        doc = _Doc(text, self._apply, uri, self._encoding())
        await doc.append(f"\n{BOT} …\n\n")
        heading_line = doc.line_count() - 3
        pending: list[str] = []
        task = asyncio.ensure_future(
            self._ask(turns.about or uri, turns.messages, lambda t: pending.append(for_editor(t)))
        )
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=FLUSH_S)
                if pending:
                    chunk = "".join(pending)
                    pending.clear()
                    await doc.append(chunk)
            answer = task.result()
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.shield(doc.append(f"{''.join(pending)}\n\n*(stopped)*\n\n{YOU}\n\n"))
            raise
        except AnswerCut as cut:
            # What arrived stays, marked, with the reason; the next Send can go on from it.
            await doc.replace_line(heading_line, f"{BOT} · {for_editor(cut.model)} · cut")
            await doc.append(f"{''.join(pending)}\n\n*(cut: {for_editor(str(cut))})*\n\n{YOU}\n\n")
            raise ChatError(f"the answer broke off and is incomplete ({cut})") from cut
        except Exception:
            await doc.append(f"\n\n*(no answer)*\n\n{YOU}\n\n")
            raise
        if pending:
            await doc.append("".join(pending))
        u = answer.usage
        tokens = u.prompt_tokens + u.completion_tokens
        heading = answer_heading(for_editor(answer.model), tokens, u.cost_usd)
        await doc.replace_line(heading_line, heading)
        if answer.finish_reason == "length":
            await doc.append("\n\n*(cut: the answer reached `[chat] max_tokens`)*")
        await doc.append(f"\n\n{YOU}\n\n")
        return answer


class _Doc:
    """Our view of the document we are writing into: edits are computed against it."""

    def __init__(self, text: str, apply: InsertEdit, uri: str, encoding: str) -> None:
        self.text = text
        self._apply = apply
        self._uri = uri
        self._encoding = encoding

    def line_count(self) -> int:
        return self.text.count("\n") + 1

    def _end(self) -> tuple[int, int]:
        last = self.text.rsplit("\n", 1)[-1]
        return self.text.count("\n"), chars_to_units(last, self._encoding)

    async def append(self, chunk: str) -> None:
        if not chunk:
            return
        line, units = self._end()
        if not await self._apply(self._uri, line, units, line, units, chunk):
            raise ChatError("the editor refused to insert the answer")
        self.text += chunk

    async def replace_line(self, index: int, new: str) -> None:
        lines = self.text.split("\n")
        old = lines[index]
        units = chars_to_units(old, self._encoding)
        if await self._apply(self._uri, index, 0, index, units, new):
            lines[index] = new
            self.text = "\n".join(lines)
