from __future__ import annotations

from aiguilleur.lsp.positions import offset_at


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
