"""The window around the cursor: one rule for where the prefix starts and the suffix ends,
whichever backend counts the tokens."""

from __future__ import annotations

from aiguilleur.context.window import (
    ANCHOR_LINES,
    REMOTE_CHARS_PER_TOKEN,
    estimated_tokens,
    fim_context,
    fitted,
    prefix_start,
    suffix_end,
)
from aiguilleur.types import FimContext


def file(n: int) -> str:
    return "".join(f"value_{i:03d} = compute({i})\n" for i in range(n))


def test_the_prefix_starts_on_an_anchor_line_that_stays_put_while_the_user_types() -> None:
    lines = file(100).splitlines(keepends=True)
    start = prefix_start(lines, 0, 300, len)
    assert start is not None and start % ANCHOR_LINES == 0
    assert sum(len(x) for x in lines[start:]) <= 300
    # A new line typed at the end: the same start, until a whole anchor span no longer fits.
    assert prefix_start([*lines, "x = 1\n"], 0, 300, len) == start


def test_without_an_anchor_that_fits_the_earliest_line_that_fits() -> None:
    lines = file(100).splitlines(keepends=True)
    start = prefix_start(lines, 1, 40, len)  # one line fits, and it is no anchor
    assert start == 99
    assert prefix_start(["x" * 100 + "\n"], 0, 40, len) is None


def test_the_suffix_holds_the_whole_lines_that_fit() -> None:
    lines = file(10).splitlines(keepends=True)
    width = len(lines[0])
    assert suffix_end(lines, width * 3, len) == 3
    assert suffix_end(lines, width * 3 - 1, len) == 2
    assert suffix_end(lines, width - 1, len) == 0


def test_a_remote_model_gets_the_engines_rule_with_estimated_tokens() -> None:
    text = file(200)
    offset = text.index("value_150") + len("value_150 = comp")
    ctx = fim_context(text, offset, "m.py", prefix_tokens=1024, suffix_tokens=128)
    fit = fitted(ctx, prefix_tokens=200, suffix_tokens=20)
    assert fit.prefix.endswith("value_150 = comp")  # the cursor line is always whole
    assert sum(estimated_tokens(x) for x in fit.prefix.splitlines(keepends=True)) <= 200
    first = int(fit.prefix.split(" ", 1)[0].removeprefix("value_"))
    assert first % ANCHOR_LINES == 0  # the same anchor lines as the engine's
    after = text[offset:].splitlines(keepends=True)
    assert fit.suffix == "".join(after[:3])  # 3 + 7 + 7 estimated tokens; a fourth line: 24
    assert len(fit.suffix) <= 20 * REMOTE_CHARS_PER_TOKEN


def test_one_giant_line_is_cut_in_characters() -> None:
    ctx = FimContext("m.js", "var a=" + "x" * 10_000, "y" * 10_000)
    fit = fitted(ctx, prefix_tokens=100, suffix_tokens=10)
    assert fit.prefix == ctx.prefix[-100 * REMOTE_CHARS_PER_TOKEN :]
    assert fit.suffix == ctx.suffix[: 10 * REMOTE_CHARS_PER_TOKEN]
