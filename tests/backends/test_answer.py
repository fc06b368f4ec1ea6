from __future__ import annotations

from aiguilleur.backends.answer import (
    PIPELINE,
    cut_at_token,
    editor_safe,
    shape,
    stop_point,
    stopped,
    trim_overlap,
    without_overlap,
    without_trailing_blank_lines,
)
from aiguilleur.types import FimContext, GenerationParams


def test_single_line_stops_at_newline() -> None:
    assert stop_point("abc\ndef", single_line=True, min_indent=None) == 3
    assert stop_point("abc", single_line=True, min_indent=None) is None


def test_indentation_drop_ends_the_block() -> None:
    text = "x = 1\n    y = 2\nz = 3\n"
    assert stop_point(text, single_line=False, min_indent=4) == len("x = 1\n    y = 2")


def test_the_block_ends_at_the_first_letter_of_a_dedented_line() -> None:
    # Generation stops there: the rest of `def g` would be cut anyway.
    assert stop_point("x = 1\n    y = 2\nd", single_line=False, min_indent=4) == 15
    # Indentation alone, or a line still as deep as the block, does not end it.
    assert stop_point("x = 1\n  ", single_line=False, min_indent=4) is None
    assert stop_point("x = 1\n\n    y", single_line=False, min_indent=4) is None


def test_text_already_after_the_cursor_is_not_repeated() -> None:
    assert trim_overlap("name)", ")\n") == "name"
    gen = "    return x\n\nprint(1)"
    assert trim_overlap(gen, "\nprint(1)\n") == "    return x"
    assert trim_overlap("abc", "xyz") == "abc"


def test_an_answer_cut_by_time_ends_on_a_whole_word() -> None:
    # The next token would have continued the word: it is dropped.
    assert cut_at_token(b"return self.fo", b"obar") == "return self."
    assert cut_at_token(b"x = compute", b"_total") == "x = "
    # The next token starts something else: the word was whole.
    assert cut_at_token(b"return self.foo", b"(") == "return self.foo"
    assert cut_at_token(b"return total", b" +") == "return total"
    assert cut_at_token(b"return (", b"a") == "return ("
    # A word the model was still in the middle of, and nothing before it: nothing.
    assert cut_at_token(b"urn", b"_value") == ""


def test_an_answer_cut_by_time_never_ends_in_half_a_character() -> None:
    cafe = "caf\u00e9".encode()
    # The \u00e9 split across two tokens: its first byte alone is no text, and the
    # word it belongs to goes on in the next token.
    assert cut_at_token(b"name = " + cafe[:-1], cafe[-1:] + b"s") == "name = "
    assert cut_at_token(b"s = '" + cafe, b"'") == "s = 'caf\u00e9"
    assert cut_at_token("x = '\u2192".encode()[:-1], b"") == "x = '"


def at(prefix: str, suffix: str) -> FimContext:
    return FimContext("m.py", prefix, suffix)


def test_the_stop_rules_end_the_line_or_the_block() -> None:
    block = GenerationParams(min_indent=4)
    assert stopped("return a + b\nprint(1)\n", at("    ", "\n"), block) == "return a + b"
    assert stopped("x = 1\n    y = 2", at("    ", ""), block) == "x = 1\n    y = 2"
    one_line = GenerationParams(single_line=True)
    assert stopped(", b)\nmore", at("f(a", ")\n"), one_line) == ", b)"


def test_what_repeats_the_text_after_the_cursor_goes() -> None:
    gen = GenerationParams()
    assert without_overlap(", b)", at("f(a", ")\n"), gen) == ", b"
    suffix = "\n\nprint(add(1, 2))\n"
    assert without_overlap("a + b\n\nprint(add(1, 2))", at("x = ", suffix), gen) == "a + b"


def test_blank_lines_at_the_end_go_and_a_blank_answer_is_none() -> None:
    gen, ctx = GenerationParams(), at("x = ", "\n")
    assert without_trailing_blank_lines("a\n  \n\n", ctx, gen) == "a"
    assert without_trailing_blank_lines("a\n    b", ctx, gen) == "a\n    b"
    assert without_trailing_blank_lines(" \n\t\n", ctx, gen) == ""


def test_control_characters_go_and_bidi_controls_stay_only_where_the_code_has_some() -> None:
    gen = GenerationParams()
    assert editor_safe("a\x1bb\rc\x85\td", at("x = ", "\n"), gen) == "abc\td"
    assert editor_safe("'\u202eevil'", at("x = ", "\n"), gen) == "'evil'"
    rtl = at("s = '\u2067\u05e9\u2069' + ", "\n")
    assert editor_safe("'\u2067x\u2069'", rtl, gen) == "'\u2067x\u2069'"


def test_every_answer_goes_through_every_filter_in_order() -> None:
    assert (stopped, without_overlap, without_trailing_blank_lines, editor_safe) == PIPELINE
    block = GenerationParams(min_indent=4)
    # Cut where the block ends, then what repeats the suffix, then the blank line left.
    text = "total = a + b\n    return total\n\nprint(add(1, 2))"
    assert shape(text, at("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"), block) == (
        "total = a + b\n    return total"
    )
    one_line = GenerationParams(single_line=True)
    assert shape("b\x07, c)\nmore", at("f(a, ", ")\n"), one_line) == "b, c"
