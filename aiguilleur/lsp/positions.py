"""LSP positions <-> str offsets, in the negotiated encoding (utf-8, utf-16 or utf-32).

`Position.character` counts code units of the negotiated encoding, never Python str
indices: Neovim and Helix ask for utf-8, VS Code uses utf-16.
"""

from __future__ import annotations

import re

_EOL = re.compile(r"\r\n|\r|\n")


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
    for m in _EOL.finditer(text):
        if count == line:
            return start, m.start()
        start = m.end()
        count += 1
    return (start, len(text)) if line == count else None


def units_to_chars(line_text: str, units: int, encoding: str) -> int:
    """Code points in the first `units` code units of `line_text` (clamped to its end)."""
    if units <= 0:
        return 0
    if encoding == "utf-8":
        return len(line_text.encode("utf-8")[:units].decode("utf-8", errors="ignore"))
    if encoding == "utf-16":
        data = line_text.encode("utf-16-le")[: units * 2]
        return len(data.decode("utf-16-le", errors="ignore"))
    return min(units, len(line_text))


def chars_to_units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def offset_at(text: str, line: int, character: int, encoding: str) -> int | None:
    """The str offset of an LSP position; None if the line does not exist (stale)."""
    bounds = line_bounds(text, line)
    if bounds is None:
        return None
    start, end = bounds
    return start + units_to_chars(text[start:end], character, encoding)
