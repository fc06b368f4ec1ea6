from __future__ import annotations

from aiguilleur.backends.postprocess import cut_at_token, stop_point, trim_overlap


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


def test_an_answer_that_came_whole_is_shaped_as_the_engine_shapes_its_own() -> None:
    from aiguilleur.backends.postprocess import shape_answer
    from aiguilleur.types import GenerationParams

    block = GenerationParams(min_indent=4)
    assert shape_answer("return a + b\nprint(1)\n", "\n", block) == "return a + b"
    assert shape_answer("x = 1\n    y = 2", "", block) == "x = 1\n    y = 2"
    one_line = GenerationParams(single_line=True)
    assert shape_answer(", b)\nmore", ")\n", one_line) == ", b"
    # The lines after the cursor, written again at the end, are trimmed.
    suffix = "\n\nprint(add(1, 2))\n"
    assert shape_answer("a + b\n\nprint(add(1, 2))", suffix, GenerationParams()) == "a + b"
