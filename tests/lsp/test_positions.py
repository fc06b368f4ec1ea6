from __future__ import annotations

from lsprotocol import types as lsp

from aiguilleur.lsp.positions import offset_at, position_at, selected_lines


def test_offsets_in_each_encoding() -> None:
    text = "aé😋b\r\nxy\rz"
    # 'é' = 2 UTF-8 bytes, 1 UTF-16 unit; '😋' = 4 bytes, 2 units.
    assert offset_at(text, 0, 7, "utf-8") == 3
    assert offset_at(text, 0, 4, "utf-16") == 3
    assert offset_at(text, 0, 3, "utf-32") == 3
    assert offset_at(text, 1, 1, "utf-16") == text.index("y")
    assert offset_at(text, 2, 1, "utf-16") == len(text)
    assert offset_at(text, 3, 0, "utf-16") is None
    assert offset_at(text, 0, 999, "utf-8") == 4  # clamped to the line's end


def test_positions_of_offsets_round_trip_in_each_encoding() -> None:
    text = "aé😋b\r\nxy\rz\n\nend😋"
    for encoding in ("utf-8", "utf-16", "utf-32"):
        for offset in range(len(text) + 1):
            if text[offset - 1 : offset + 1] == "\r\n":
                continue  # between \r and \n: no position names it
            p = position_at(text, offset, encoding)
            assert offset_at(text, p.line, p.character, encoding) == offset, (encoding, offset)
    assert position_at(text, text.index("z"), "utf-16") == lsp.Position(2, 0)
    assert position_at(text, len(text), "utf-16") == lsp.Position(4, 5)  # 😋 is 2 units
    assert position_at(text, len(text), "utf-8") == lsp.Position(4, 7)  # and 4 bytes


def test_a_selection_ending_at_a_line_start_covers_the_lines_above_it() -> None:
    whole_lines = lsp.Range(lsp.Position(2, 0), lsp.Position(5, 0))
    assert selected_lines(whole_lines) == (2, 4)
    assert selected_lines(lsp.Range(lsp.Position(2, 3), lsp.Position(5, 1))) == (2, 5)
    assert selected_lines(lsp.Range(lsp.Position(2, 0), lsp.Position(2, 0))) == (2, 2)
