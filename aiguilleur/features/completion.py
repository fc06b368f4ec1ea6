"""Completions at the cursor: one pipeline for inline (ghost text) and menu items."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec

from aiguilleur.config.settings import CompletionConfig
from aiguilleur.context.block import RepositoryBlock
from aiguilleur.context.index import MAX_FILE_BYTES, RepositoryIndex
from aiguilleur.context.privacy import is_private
from aiguilleur.context.ring import ContextRing
from aiguilleur.context.window import fim_context
from aiguilleur.errors import Superseded
from aiguilleur.features.acceptance import Acceptance
from aiguilleur.features.needs import FeatureNeeds
from aiguilleur.features.text import line_at, line_bounds, line_end
from aiguilleur.features.uris import path_of
from aiguilleur.sanitize import for_editor
from aiguilleur.tasks import TaskSet
from aiguilleur.types import (
    Backend,
    Completion,
    ContextChunk,
    GenerationParams,
    Request,
    RequestKind,
    StopReason,
    Usage,
)

log = logging.getLogger(__name__)

# Text after the cursor compared to decide that the user is typing through a suggestion.
_AFTER_CHARS = 256
# Files bigger than this get no suggestions: a minified bundle or a data dump.
MAX_DOCUMENT_CHARS = 4_000_000
# A block proposed for a receiver the kept one lacks is evaluated once the user paused
# this long after a suggestion: longer than between two keystrokes, so that typing on
# does not start and stop it at each one.
BLOCK_PROPOSAL_IDLE_S = 0.3


class Suggestion(msgspec.Struct, frozen=True):
    """What the editor shows, with where it applies, in str offsets of the text it was
    asked for."""

    text: str
    offset: int  # the cursor
    word_start: int  # start of the word before the cursor (for menu items' textEdit)
    word: str
    usage: Usage
    route: str
    model: str
    typed_through: bool = False  # answered from what was shown or computed ahead
    ahead: bool = False  # computed ahead, while the suggestion before it was shown
    server_ms: float = 0.0
    # Its id for the editor to report it accepted (features/acceptance.py); 0: none.
    shown_id: int = 0
    # Why generation ended: eog (the model ended it), boundary (the line or block
    # ended), length (max_tokens), time (the time budget: cut after a whole word).
    stop_reason: StopReason = StopReason.NONE


class _Shown(msgspec.Struct, frozen=True):
    before: str
    after: str
    text: str
    route: str
    model: str


class CompletionFeature:
    """Builds a Request from a document and an offset in it, and remembers what it showed."""

    def __init__(self, needs: FeatureNeeds) -> None:
        self._routes = needs.routes
        self._settings = needs.settings
        self._documents = needs.documents
        self._editor = needs.editor
        self.block = RepositoryBlock()
        cfg = self.settings
        self.ring = ContextRing(cfg.extra_chunks, cfg.extra_chunk_lines)
        self._shown: OrderedDict[str, _Shown] = OrderedDict()
        # Per document, the suggestion that follows the shown one once it is accepted.
        self._ahead: OrderedDict[str, _Shown] = OrderedDict()
        # The prefetch running for a document, with the text before and after the cursor
        # it is for: a request for exactly that text waits for it rather than stop it.
        self._ahead_running: dict[str, tuple[str, str, asyncio.Task[None]]] = {}
        self._tasks = TaskSet()
        self._proposing: asyncio.Task[None] | None = None
        self._last_uri: str | None = None
        self._last_line: dict[str, int] = {}
        self.last: dict[str, Suggestion] = {}
        self._slot = f"completion:{id(self):x}"
        self.acceptance = Acceptance(needs.outcomes)

    @property
    def settings(self) -> CompletionConfig:
        """This feature's section of the session's settings, as they are now."""
        return self._settings.policy.completion

    @property
    def last_uri(self) -> str | None:
        """The document the user last opened (chat documents aside), typed in or asked a
        suggestion in."""
        return self._last_uri

    def note_open(self, uri: str, text: str, *, chat: bool = False) -> None:
        # A file just opened is the one being edited (Helix's `space i c` right after
        # `hx m.py`); a chat document opened beside it is not what a new chat is about.
        if not chat:
            self._last_uri = uri
        if len(text) <= MAX_DOCUMENT_CHARS:
            self._context_ring().add(path_of(uri), text.splitlines(keepends=True), 0)

    def _context_ring(self) -> ContextRing:
        """The ring, sized by the settings as they are now: the editor's and the
        workspace's arrive after this feature is built, and can change."""
        cfg = self.settings
        self.ring.resize(cfg.extra_chunks, cfg.extra_chunk_lines)
        return self.ring

    def forget(self, uri: str) -> None:
        self.acceptance.close(uri, self._documents.text(uri))
        self._shown.pop(uri, None)
        self._ahead.pop(uri, None)
        self._ahead_running.pop(uri, None)
        self.last.pop(uri, None)

    def finish(self) -> None:
        """The session ends: what became of the suggestions still shown is known now."""
        self.acceptance.close_all(self._documents.text)

    def note_change(self, uri: str, line: int | None, text: str | None = None) -> None:
        """An edit is where the user is: editing another file than the last one moves the
        chunk around the last place in the file they left into the ring, and a later request
        elsewhere brings this file's edited chunk along. `text`: the document now (what
        became of a suggestion shown in it is read from it, even after it is closed)."""
        if line is not None:
            self._last_line[uri] = line
        if text is not None:
            self.acceptance.changed(uri, text)
        self._switch(uri)

    def _switch(self, uri: str) -> None:
        """Moving to another file: a chunk around where the user was joins the ring."""
        prev = self._last_uri
        self._last_uri = uri
        if prev is None or prev == uri:
            return
        text = self._documents.text(prev)
        if text is not None and len(text) <= MAX_DOCUMENT_CHARS:
            self._context_ring().add(
                path_of(prev), text.splitlines(keepends=True), self._last_line.get(prev, 0)
            )

    async def suggest(
        self,
        uri: str,
        text: str,
        version: int | None,
        offset: int,
    ) -> Suggestion | None:
        """The suggestion at `offset` of `text` (the document `uri` at `version`); None
        when there is nothing worth showing or the user typed meanwhile. Raises
        errors.Cancelled when the engine stopped the request (shutdown)."""
        t0 = time.perf_counter()
        if self._proposing is not None:  # the user is typing: not idle any more
            self._proposing.cancel()
            self._proposing = None
        if len(text) > MAX_DOCUMENT_CHARS or not 0 <= offset <= len(text):
            return None
        line, line_start = line_at(text, offset)
        end_of_line = line_end(text, line_start)
        word = _word_before(text[line_start:offset])
        self._switch(uri)
        self._last_line[uri] = line

        def make(completion: Completion, typed: bool, usage: Usage) -> Suggestion:
            return Suggestion(
                ahead=completion.stop_reason is StopReason.AHEAD,
                text=completion.text,
                offset=offset,
                word_start=offset - len(word),
                word=word,
                usage=usage,
                route=completion.route,
                model=for_editor(completion.model),
                typed_through=typed,
                stop_reason=completion.stop_reason,
            )

        after = text[offset : offset + _AFTER_CHARS]
        through = self._type_through(
            self._shown.get(uri), text, offset, after, StopReason.TYPED_THROUGH
        )
        if through is not None:
            s = make(through, True, through.usage)
            return self._remember(uri, s, text, after, t0, continued=True)
        running = self._ahead_running.get(uri)
        if running is not None and (text[:offset], after) == running[:2]:
            await asyncio.shield(running[2])
            if self._documents.version(uri) != version:
                return None
        ahead = self._type_through(
            self._ahead.pop(uri, None), text, offset, after, StopReason.AHEAD
        )
        if ahead is not None:
            s = self._remember(uri, make(ahead, True, ahead.usage), text, after, t0)
            if s.text:
                self._look_ahead(uri, text, offset, s.text)
            return s

        window = text[max(0, offset - 64_000) : offset + 16_000]
        if "\x00" in window:
            return None  # binary data: nothing sensible to suggest
        request = self._request(uri, text, offset, line_start, end_of_line)
        build_ms = (time.perf_counter() - t0) * 1000
        try:
            completion = await self._routes.complete(request)
        except Superseded:
            return None
        if completion is None:
            return None
        if self._documents.version(uri) != version:
            return None  # the user typed meanwhile: this answer is for an old text
        s = make(completion, False, completion.usage)
        s = self._remember(uri, s, text, after, t0)
        log.debug("completion.done uri=%s build_ms=%.2f", uri, build_ms)
        if s.text and completion.backend is Backend.LOCAL:
            self._look_ahead(uri, text, offset, completion.text)
        if completion.backend is Backend.LOCAL:
            self._propose_block(uri, text, version, offset)
        return s

    def _propose_block(self, uri: str, text: str, version: int | None, offset: int) -> None:
        """When the code at the cursor uses a receiver whose class the kept block lacks
        (typed after the block was built): once the user paused, have the engine
        evaluate a block that shows it, and make it the block when all of it is
        evaluated. Until then the requests keep the old block, whose prompt the engine
        holds: no keystroke waits for the new one."""
        where = self._block_where(uri, text)
        if where is None:
            return
        index, path, private, globs = where
        budget = self.settings.repository_tokens

        async def run() -> None:
            await asyncio.sleep(BLOCK_PROPOSAL_IDLE_S)
            if self._documents.version(uri) != version:
                return
            chunks = self.block.propose(index, path, text, offset, budget, private, globs)
            if chunks is None:
                return
            _, start = line_at(text, offset)
            end = line_end(text, start)
            request = self._request(uri, text, start, start, end, repository=chunks)
            if await self._routes.prefill(request) and self.block.adopt(chunks):
                log.debug("completion.block_adopted uri=%s", uri)

        self._proposing = self._tasks.spawn(run(), "repository block proposal")

    def _look_ahead(self, uri: str, text: str, offset: int, shown: str) -> None:
        """Compute, while the engine is idle, the suggestion for the text as it will be
        once `shown` is accepted (llama.vim does the same), so that accepting it and
        going on gets the next one at once."""
        if not self.settings.prefetch:
            return
        accepted = text[:offset] + shown + text[offset:]
        end = offset + len(shown)
        _, start = line_at(accepted, end)
        request = self._request(uri, accepted, end, start, line_end(accepted, start))
        before, after = accepted[:end], accepted[end : end + _AFTER_CHARS]

        async def run() -> None:
            try:
                completion = await self._routes.prefetch(request)
            finally:
                running = self._ahead_running.get(uri)
                if running is not None and running[2] is task:
                    del self._ahead_running[uri]
            if completion is None:
                return
            # Kept even when empty: that nothing follows is an answer too, given at once.
            entry = _Shown(before, after, completion.text, completion.route, completion.model)
            _keep(self._ahead, uri, entry)

        task = self._tasks.spawn(run(), "prefetch")
        self._ahead_running[uri] = (before, after, task)

    def _request(
        self,
        uri: str,
        text: str,
        offset: int,
        line_start: int,
        line_end: int,
        repository: tuple[ContextChunk, ...] | None = None,
    ) -> Request:
        """The request at `offset`; with the repository block as it stands, unless
        `repository` says what block to put there."""
        cfg = self.settings
        rest_of_line = text[offset:line_end]
        ctx = fim_context(
            text,
            offset,
            path_of(uri),
            prefix_tokens=cfg.prefix_tokens,
            suffix_tokens=cfg.suffix_tokens,
            repository=(
                self._repository_block(uri, text, offset) if repository is None else repository
            ),
            extra=self._context_ring().chunks(path_of(uri)),
        )
        current = text[line_start:line_end]
        return Request(
            kind=RequestKind.COMPLETION,
            # One slot per session, not per document: the user types in one place at a
            # time, so a suggestion for the file they just left is worthless too.
            key=self._slot,
            context=ctx,
            params=GenerationParams(
                max_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
                # In the middle of code, complete the line only.
                single_line=bool(rest_of_line.strip()),
                time_budget_ms=cfg.time_budget_ms,
                min_indent=len(current) - len(current.lstrip(" \t")),
            ),
            prefix_tokens=cfg.prefix_tokens,
            suffix_tokens=cfg.suffix_tokens,
            extra_tokens=cfg.extra_tokens,
            repository_tokens=cfg.repository_tokens,
        )

    def _repository_block(self, uri: str, text: str, offset: int) -> tuple[ContextChunk, ...]:
        """What the code at the cursor uses from the other files of the workspace, as the
        index knows them; nothing for a file outside the workspace, or one bigger than
        the index reads (its scan would cost every keystroke). A failure to build it
        costs the suggestion its block, never the suggestion."""
        where = self._block_where(uri, text)
        if where is None:
            return ()
        index, path, private, globs = where
        try:
            budget = self.settings.repository_tokens
            return self.block.chunks(index, path, text, offset, budget, private, globs)
        except Exception:
            log.warning("completion.block_failed uri=%s", uri, exc_info=True)
            return ()

    def _block_where(
        self, uri: str, text: str
    ) -> tuple[RepositoryIndex, str, Callable[[str], bool], tuple[str, ...]] | None:
        """The index, the file's path in it, what is private and the globs that say so,
        for a block of `uri`; None when it gets none (no index, the block turned off, a
        file outside the workspace or bigger than the index reads)."""
        index = self._editor.index
        if index is None or self.settings.repository_tokens <= 0 or len(text) > MAX_FILE_BYTES:
            return None
        path = index.relative(Path(path_of(uri)))
        if path is None:
            return None
        globs = tuple(self._settings.policy.privacy.private)
        return index, path, lambda p: is_private(p, globs), globs

    def prefill_request(self, uri: str, text: str) -> Request | None:
        """What to evaluate ahead of the user for a document just opened: the text before
        the line they last worked on here, else, for a file that surely fits the prefix
        window (2 characters per token at least), all of it: the window of any cursor
        position then starts where the prefill does."""
        if len(text) > MAX_DOCUMENT_CHARS or "\x00" in text[:64_000]:
            return None
        line = self._last_line.get(uri)
        bounds = line_bounds(text, line) if line is not None else None
        if bounds is None and len(text) > self.settings.prefix_tokens * 2:
            return None  # a big file and no idea where the user will type: nothing to gain
        if bounds is None:
            offset = len(text)
            start = text.rfind("\n", 0, offset) + 1
            end = offset
        else:
            start, end = bounds
            offset = start
        request = self._request(uri, text, offset, start, end)
        if not self._routes.local_first(request):
            return None  # a remote route answers here: the engine would warm up for nothing
        log.debug("prefill.request uri=%s line=%s offset=%d", uri, line, offset)
        return request

    def _remember(
        self,
        uri: str,
        s: Suggestion,
        text: str,
        after: str,
        t0: float,
        continued: bool = False,
    ) -> Suggestion:
        """`s` is shown in `text`: kept to be typed through, and followed until what
        became of it is known (`continued`: the rest of the one shown before)."""
        u = s.usage
        engine_ms = u.queue_ms + u.prompt_ms + u.generation_ms
        shown_id = 0
        if s.text:
            shown_id = self.acceptance.shown(
                uri, text, s.offset, s.text, s.route, s.model, continued
            )
        s = msgspec.structs.replace(
            s,
            server_ms=max(0.0, (time.perf_counter() - t0) * 1000 - engine_ms),
            shown_id=shown_id,
        )
        self.last[uri] = s
        if s.text:
            before = text[: s.offset]
            _keep(self._shown, uri, _Shown(before, after, s.text, s.route, s.model))
        return s

    @staticmethod
    def _type_through(
        shown: _Shown | None, text: str, offset: int, after: str, how: StopReason
    ) -> Completion | None:
        """What is left of `shown` when the user typed its start (or nothing of it)."""
        if shown is None:
            return None
        n = len(shown.before)
        if offset < n or after != shown.after:
            return None
        typed = text[n:offset]
        nothing_ahead = how is StopReason.AHEAD and not shown.text and not typed
        if not nothing_ahead and (
            not shown.text.startswith(typed) or len(typed) >= len(shown.text)
        ):
            return None
        if not text.startswith(shown.before):
            return None
        rest = shown.text[len(typed) :]
        return Completion(
            rest, Usage(cached=True), route=shown.route, model=shown.model, stop_reason=how
        )


def _keep(shown: OrderedDict[str, _Shown], uri: str, entry: _Shown) -> None:
    shown[uri] = entry
    shown.move_to_end(uri)
    while len(shown) > 64:
        shown.popitem(last=False)


def _word_before(line_before_cursor: str) -> str:
    i = len(line_before_cursor)
    while i > 0 and (line_before_cursor[i - 1].isalnum() or line_before_cursor[i - 1] == "_"):
        i -= 1
    return line_before_cursor[i:]
