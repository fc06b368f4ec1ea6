"""What the sanitizer keeps and removes, in milliseconds (the e2e tests see each surface)."""

from __future__ import annotations

from aiguilleur.sanitize import for_editor, has_bidi, near

TROJAN = 'if access_level != "user\u202e \u2066// Check if admin\u2069 \u2066":'


def test_bidi_controls_go_unless_kept() -> None:
    assert for_editor(TROJAN) == 'if access_level != "user // Check if admin ":'
    assert for_editor(TROJAN, keep_bidi=True) == TROJAN


def test_every_embedding_override_and_isolate_is_a_bidi_control() -> None:
    controls = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
    assert all(has_bidi(c) for c in controls)
    assert for_editor("".join(controls)) == ""
    # Right-to-left letters themselves are text, not controls.
    assert not has_bidi("\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627")


def test_near_the_cursor_is_a_window_around_it() -> None:
    text = "a\u202e" + "x" * 5000 + "|" + "y" * 5000
    cursor = text.index("|")
    assert not has_bidi(near(text, cursor))
    assert has_bidi(near(text, 10))
