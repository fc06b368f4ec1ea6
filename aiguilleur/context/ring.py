"""A ring of chunks of the other files the user opened or edited, as llama.vim keeps one."""

from __future__ import annotations

from collections import deque

import msgspec

from aiguilleur.types import ContextChunk


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
