"""Lines as LSP counts them, in str offsets: what the features cut windows and edits by."""

from __future__ import annotations

from aiguilleur.features.text import line_at, line_bounds, line_end

MIXED = "one\r\ntwo\rthree\nfour"


def test_every_offset_is_on_the_line_lsp_puts_it_on() -> None:
    starts = [0, 5, 9, 15]
    for offset in range(len(MIXED) + 1):
        line, start = line_at(MIXED, offset)
        if MIXED[offset - 1 : offset + 1] == "\r\n":
            continue
        assert start == max(s for s in starts if s <= offset)
        assert line == starts.index(start)
        assert line_bounds(MIXED, line) == (start, line_end(MIXED, start))


def test_lines_without_carriage_returns_take_the_fast_path_to_the_same_answer() -> None:
    text = "a\nbb\n\nccc"
    assert [line_at(text, o) for o in (0, 2, 5, 6, 9)] == [(0, 0), (1, 2), (2, 5), (3, 6), (3, 6)]
    assert line_bounds(text, 3) == (6, 9)
    assert line_bounds(text, 4) is None
    assert line_end(text, 2) == 4
