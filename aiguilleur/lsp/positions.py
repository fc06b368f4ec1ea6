"""LSP positions <-> str offsets, in the negotiated encoding (utf-8, utf-16 or utf-32).

`Position.character` counts code units of the negotiated encoding, never Python str
indices: Neovim and Helix ask for utf-8, VS Code uses utf-16. Everything below lsp/
works in str offsets; this is the edge where they meet the editor's positions.
"""

from __future__ import annotations

from lsprotocol import types as lsp

from aiguilleur.features.text import line_at, line_bounds


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


def position_at(text: str, offset: int, encoding: str) -> lsp.Position:
    """The LSP position of a str offset of `text`."""
    line, start = line_at(text, offset)
    return lsp.Position(line, chars_to_units(text[start:offset], encoding))


def selected_lines(selection: lsp.Range) -> tuple[int, int]:
    """The lines a selection covers, the last inclusive: a selection that ends at the start
    of a line (whole lines selected) does not cover that line."""
    start, end = selection.start, selection.end
    last = end.line - 1 if end.character == 0 and end.line > start.line else end.line
    return start.line, max(start.line, last)
