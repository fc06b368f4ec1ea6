"""Lines of a document's text, as LSP counts them: `\\r\\n`, `\\r` and `\\n` end a line."""

from __future__ import annotations

import re

EOL = re.compile(r"\r\n|\r|\n")


def line_bounds(text: str, line: int) -> tuple[int, int] | None:
    """(start, end) str offsets of `line` without its terminator; None past the end."""
    if line < 0:
        return None
    if "\r" not in text:
        start = 0
        for _ in range(line):
            nl = text.find("\n", start)
            if nl < 0:
                return None
            start = nl + 1
        end = text.find("\n", start)
        return start, len(text) if end < 0 else end
    start = 0
    count = 0
    for m in EOL.finditer(text):
        if count == line:
            return start, m.start()
        start = m.end()
        count += 1
    return (start, len(text)) if line == count else None


def line_at(text: str, offset: int) -> tuple[int, int]:
    """(line number, start offset) of the line that holds `offset`."""
    if "\r" not in text:
        return text.count("\n", 0, offset), text.rfind("\n", 0, offset) + 1
    line = start = 0
    for m in EOL.finditer(text, 0, offset):
        line, start = line + 1, m.end()
    return line, start


def line_end(text: str, start: int) -> int:
    """The offset where the line starting at `start` ends, before its terminator."""
    m = EOL.search(text, start)
    return len(text) if m is None else m.start()
