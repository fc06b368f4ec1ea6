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
An answer's first line may list the definitions of other files the model was given
(`*context sent: `app/db.py:4` User*`, sources.py); it is not sent back.
Sending a chat sends all turns; the answer is appended to the document by successive
`workspace/applyEdit` insertions (at most about ten per second), so it appears
progressively in any editor.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.config.settings import ChatConfig
from aiguilleur.errors import AnswerCut
from aiguilleur.features.needs import FeatureNeeds
from aiguilleur.features.sources import Sources, sources_for
from aiguilleur.features.uris import path_of
from aiguilleur.languages import language_of
from aiguilleur.sanitize import for_editor, has_bidi
from aiguilleur.types import Answer, ChatMessage, Quote, RequestKind

YOU = "## You"
BOT = "## aiguilleur"
SENT = "*context sent:"
MAX_ABOUT_BYTES = 1 << 20  # a file the chat is about, read for its imports, at most
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
        if role == "assistant" and line.startswith(SENT):
            continue  # what we told the user, not what the model said
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


class ChatFile(msgspec.Struct, frozen=True):
    """A chat document just written, about lines of another file."""

    path: Path
    text: str
    cursor: int  # where the user types the question, a str offset of `text`


def write_new_chat(
    directory: Path, uri: str, source: str, start_line: int, end_line: int, question: str
) -> ChatFile:
    """A new chat document in `directory`, about lines `start_line`..`end_line`
    (inclusive; -1: the whole file) of `source`, the text of `uri`."""
    lines = source.split("\n")
    end = len(lines) - 1 if end_line < 0 else min(end_line, len(lines) - 1)
    code = "\n".join(lines[start_line : end + 1]) if end_line != -1 else source
    about = path_of(uri)
    path = chat_path(directory, about)
    title = f"{Path(about).name}, lines {start_line + 1}-{end + 1}"
    text = new_chat_text(title, about, question, code, language_of(about))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ChatError(f"cannot write {path}: {error}") from error
    # The cursor goes where the question is typed (or ends), ready for the user.
    cursor = text.index(f"{YOU}\n\n") + len(YOU) + 2 + len(question.split("\n")[0])
    return ChatFile(path, text, cursor)


# (uri, base, start, end, text): replace base[start:end] of the document with text, base
# being the document's text as we wrote it so far.
InsertEdit = Callable[[str, str, int, int, str], Awaitable[bool]]

FLUSH_S = 0.1  # about ten edits a second at most


class ChatFeature:
    """Sends a chat document and streams the answer into it."""

    def __init__(self, needs: FeatureNeeds) -> None:
        self._apply: InsertEdit = needs.editor.replace
        self._editor = needs.editor
        self._documents = needs.documents
        self._routes = needs.routes
        self._settings = needs.settings

    @property
    def settings(self) -> ChatConfig:
        """This feature's section of the session's settings, as they are now."""
        return self._settings.policy.chat

    async def _ask(
        self, about: str, messages: list[ChatMessage], on_text: Callable[[str], None]
    ) -> Answer:
        return await self._routes.ask(
            RequestKind.CHAT, path_of(about), messages, self.settings.max_tokens, on_text
        )

    def _prompt(self, turns: ChatTurns) -> tuple[Sources, list[ChatMessage]]:
        """The sources found for the chat's turns, and the messages sent."""
        sources = self._sources(turns)
        messages = turns.messages
        if sources.prompt:
            messages = [messages[0], ChatMessage("system", sources.prompt.strip()), *messages[1:]]
        return sources, messages

    async def quote(self, uri: str, text: str) -> Quote | None:
        """What sending the chat now would cost, where a paid route would answer it."""
        if not ready_for_answer(text):
            return None
        turns = parse(text)
        about = path_of(turns.about or uri)
        if not self._routes.paid_first(RequestKind.CHAT, about):
            return None  # nothing to price: the sources not looked up
        _, messages = self._prompt(turns)
        return await self._routes.quote(RequestKind.CHAT, about, messages, self.settings.max_tokens)

    async def send(self, uri: str, text: str) -> Answer:
        if not ready_for_answer(text):
            raise ChatError(
                f"nothing to send: write your question under the last '{YOU}' heading first"
            )
        turns = parse(text)
        sources, messages = self._prompt(turns)
        quote = await self._routes.quote(
            RequestKind.CHAT, path_of(turns.about or uri), messages, self.settings.max_tokens
        )
        doc = _Doc(text, self._apply, uri)
        # The price before paying, replaced by what was paid once the answer is in.
        priced = f" · {for_editor(quote.title())}" if quote is not None else ""
        await doc.append(f"\n{BOT}{priced} …\n\n")
        heading_line = doc.line_count() - 3
        if sources.stubs:
            await doc.append(f"{SENT} {for_editor(sources.listed())}*\n\n")
        pending: list[str] = []
        keep_bidi = has_bidi(text)  # the user writes right-to-left in this chat already
        task = asyncio.ensure_future(
            self._ask(
                turns.about or uri,
                messages,
                lambda t: pending.append(for_editor(t, keep_bidi)),
            )
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

    def _sources(self, turns: ChatTurns) -> Sources:
        """The definitions of other files that the chat's code uses (through the imports
        of the file it is about) and that its last question names."""
        if not turns.about:
            return Sources()
        about = Path(turns.about)
        text = self._documents.text(about.as_uri())
        if text is None:
            try:
                if about.stat().st_size > MAX_ABOUT_BYTES:
                    return Sources()
                text = about.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
        asked = [m.content for m in turns.messages if m.role == "user"]
        return sources_for(
            self._editor.index,
            about,
            text,
            "\n".join(asked),
            asked[-1] if asked else "",
            self.settings.repository_tokens,
            tuple(self._settings.policy.privacy.private),
        )


class _Doc:
    """Our view of the document we are writing into: edits are computed against it.

    An edit, once sent, is the editor's to apply, whether or not we still wait for its
    answer: so each edit runs to its end even when the answer is stopped meanwhile (our
    view then includes it), and edits run one at a time, each against the text the one
    before it left. Without this, a stop during an edit put the mark and the user's new
    heading before the words still on their way.
    """

    def __init__(self, text: str, apply: InsertEdit, uri: str) -> None:
        self.text = text
        self._apply = apply
        self._uri = uri
        self._turn = asyncio.Lock()

    def line_count(self) -> int:
        return self.text.count("\n") + 1

    async def append(self, chunk: str) -> None:
        if chunk:
            await self._whole(self._append(chunk))

    async def replace_line(self, index: int, new: str) -> None:
        await self._whole(self._replace_line(index, new))

    async def _whole(self, edit: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(edit)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # It goes on; its failure, if any, is the caller's no longer.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise

    async def _append(self, chunk: str) -> None:
        async with self._turn:
            end = len(self.text)
            if not await self._apply(self._uri, self.text, end, end, chunk):
                raise ChatError("the editor refused to insert the answer")
            self.text += chunk

    async def _replace_line(self, index: int, new: str) -> None:
        async with self._turn:
            lines = self.text.split("\n")
            start = sum(len(line) + 1 for line in lines[:index])
            if await self._apply(self._uri, self.text, start, start + len(lines[index]), new):
                lines[index] = new
                self.text = "\n".join(lines)
