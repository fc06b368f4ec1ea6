"""Text we hand an editor: no control characters but tab and newline.

Model output can hold any code point. A vertical tab, an escape or a lone carriage return
in a menu label, ghost text or an edit is drawn by terminal editors (Helix, Neovim in a
terminal) as a cursor movement and garbles the screen until undo; a carriage return
also shifts every LSP position after it, since LSP counts it as a line end.
"""

from __future__ import annotations

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F, which some
# terminals read as escape sequences).
_CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def for_editor(text: str) -> str:
    """`text` without the control characters an editor must not receive."""
    return text.translate(_CONTROLS)
