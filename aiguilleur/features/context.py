"""Cursor context: text windows around the cursor and a ring of chunks from other files."""

from __future__ import annotations

from collections import deque

import msgspec

from aiguilleur.types import ContextChunk, FimContext

# Characters per token, generously: windows are cut in characters here (cheap), then
# trimmed in real tokens by the backend, which owns the tokenizer.
_CHARS_PER_TOKEN = 8


class _RingEntry(msgspec.Struct, frozen=True):
    path: str
    first_line: int
    last_line: int
    text: str


class ContextRing:
    """Chunks of other open and recently edited files, oldest first (as llama.vim).

    New chunks go to the end, so the ring's serialisation keeps a stable prefix while the
    user types in one file; a chunk overlapping a newer one from the same file is dropped.
    """

    def __init__(self, capacity: int, chunk_lines: int) -> None:
        self.capacity = capacity
        self.chunk_lines = chunk_lines
        self._ring: deque[_RingEntry] = deque()

    def resize(self, capacity: int, chunk_lines: int) -> None:
        """New settings: fewer chunks drop the oldest; new chunks take the new size."""
        self.capacity, self.chunk_lines = capacity, chunk_lines
        while len(self._ring) > max(0, capacity):
            self._ring.popleft()

    def add(self, path: str, lines: list[str], around_line: int) -> None:
        if self.capacity <= 0 or not lines:
            return
        half = self.chunk_lines // 2
        first = max(0, min(around_line - half, len(lines) - self.chunk_lines))
        last = min(len(lines), first + self.chunk_lines)
        text = "".join(lines[first:last])
        if not text.strip() or "\x00" in text:
            return
        entry = _RingEntry(path, first, last, text)
        for old in list(self._ring):
            if old.path == path and old.first_line < last and first < old.last_line:
                if old.text == text:
                    return  # already there: keep its place, keep the prefix stable
                self._ring.remove(old)
        self._ring.append(entry)
        while len(self._ring) > self.capacity:
            self._ring.popleft()

    def chunks(self, exclude_path: str) -> tuple[ContextChunk, ...]:
        return tuple(ContextChunk(e.path, e.text) for e in self._ring if e.path != exclude_path)


def fim_context(
    text: str,
    offset: int,
    path: str,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    extra: tuple[ContextChunk, ...] = (),
    language: str = "",
) -> FimContext:
    """Windows around `offset` (a str index), cut at line starts / ends."""
    start = max(0, offset - prefix_tokens * _CHARS_PER_TOKEN)
    if start > 0:
        nl = text.find("\n", start, offset)
        start = nl + 1 if nl >= 0 else start
    end = min(len(text), offset + suffix_tokens * _CHARS_PER_TOKEN)
    if end < len(text):
        nl = text.rfind("\n", offset, end)
        end = nl + 1 if nl >= 0 else end
    first_line = text.count("\n", 0, start)
    return FimContext(
        path=path,
        prefix=text[start:offset],
        suffix=text[offset:end],
        prefix_first_line=first_line,
        extra=extra,
        language=language,
    )
