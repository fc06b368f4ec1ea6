"""Text we hand an editor: no control characters but tab and newline.

Model output can hold any code point. A vertical tab, an escape or a lone carriage return
in a menu label, ghost text or an edit is drawn by terminal editors (Helix, Neovim in a
terminal) as a cursor movement and garbles the screen until undo; a carriage return
also shifts every LSP position after it, since LSP counts it as a line end.

Unicode's bidirectional controls make code read differently from how it runs ("Trojan
Source", CVE-2021-42574): an embedding or isolate opened in a comment or a string can move
what follows on screen. They are removed too, unless the user's own text where the answer
goes already holds them (right-to-left text in a string literal stays possible).
"""

from __future__ import annotations

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F, which some
# terminals read as escape sequences).
_CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


# LRE, RLE, PDF, LRO, RLO (U+202A-U+202E) and LRI, RLI, FSI, PDI (U+2066-U+2069).
BIDI_CONTROLS = frozenset((*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
_CONTROLS_AND_BIDI = {**_CONTROLS, **{c: None for c in BIDI_CONTROLS}}
# How much of the document around the cursor decides whether bidi controls belong there.
NEAR_CURSOR_CHARS = 1000


def has_bidi(text: str) -> bool:
    return any(ord(c) in BIDI_CONTROLS for c in text)


def for_editor(text: str, keep_bidi: bool = False) -> str:
    """`text` without the control characters an editor must not receive; bidirectional
    controls go too unless `keep_bidi` (the text the answer joins already has them)."""
    return text.translate(_CONTROLS if keep_bidi else _CONTROLS_AND_BIDI)


def near(text: str, offset: int) -> str:
    """The part of `text` around `offset` whose bidi controls a suggestion may keep."""
    return text[max(0, offset - NEAR_CURSOR_CHARS) : offset + NEAR_CURSOR_CHARS]
