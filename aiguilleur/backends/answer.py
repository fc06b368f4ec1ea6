"""The answer pipeline: what a completion's text goes through before an editor sees it,
whichever backend wrote it (the embedded engine, a shared server, a model behind
OpenRouter, raw fill-in-the-middle or a chat answer fitted to the hole).

`shape` runs the filters in order, each a function of its own: the stop rules (the end of
the line, or of the cursor's block), the overlap with the text after the cursor, the
blank lines at the end, the characters an editor must not receive. The route loop runs
it once on every completion. The engine also checks `stop_point` while it streams (the
tokens of a line that will be cut are not worth generating) and cuts an answer the time
budget stopped on a whole word (`cut_at_token`): those two need the stream.
"""

from __future__ import annotations

import re

from aiguilleur.sanitize import NEAR_CURSOR_CHARS, for_editor, has_bidi
from aiguilleur.types import FimContext, GenerationParams


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def stop_point(text: str, *, single_line: bool, min_indent: int | None) -> int | None:
    """Index at which generated `text` should be cut, or None to keep generating.

    Single-line requests end at the first newline. Otherwise a line indented less than
    the cursor's block ends the block the user is writing, as soon as its first visible
    character is there: the tokens of a line that will be cut are not worth generating.
    """
    first_nl = text.find("\n")
    if first_nl < 0:
        return None
    if single_line:
        return first_nl
    if min_indent is None:
        return None
    start = first_nl + 1
    while start <= len(text):
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip() and indent_of(line) < min_indent:
            return start - 1
        if end < 0:
            return None
        start = end + 1
    return None


def trim_overlap(text: str, suffix: str) -> str:
    """Drop the end of `text` that repeats what already follows the cursor."""
    rest_of_line = suffix.split("\n", 1)[0]
    if "\n" not in text:
        stripped = rest_of_line.strip()
        if stripped and text.rstrip().endswith(stripped):
            return text.rstrip()[: -len(stripped)]
        return text
    # Multi-line: trailing generated lines identical to the next lines of the file.
    gen_lines = text.rstrip("\n").split("\n")
    suf_lines = [line for line in suffix.split("\n")[1:] if line.strip()]
    if not suf_lines:
        return text
    for n in range(min(len(gen_lines) - 1, len(suf_lines)), 0, -1):
        tail = [line for line in gen_lines[-n:] if line.strip()]
        if tail and tail == suf_lines[: len(tail)]:
            return "\n".join(gen_lines[:-n]).rstrip()
    return text


def stopped(text: str, ctx: FimContext, params: GenerationParams) -> str:
    """The answer cut by the stop rules (stop_point)."""
    cut = stop_point(text, single_line=params.single_line, min_indent=params.min_indent)
    return text if cut is None else text[:cut]


def without_overlap(text: str, ctx: FimContext, params: GenerationParams) -> str:
    """The answer without its end that repeats the text after the cursor (trim_overlap)."""
    return trim_overlap(text, ctx.suffix)


_TRAILING_BLANK_LINES = re.compile(r"(?:[ \t]*\n)+[ \t]*\Z")


def without_trailing_blank_lines(text: str, ctx: FimContext, params: GenerationParams) -> str:
    """The answer without the blank lines it ends with (they would push the user's next
    lines down); nothing at all if it is only whitespace."""
    text = _TRAILING_BLANK_LINES.sub("", text)
    return text if text.strip() else ""


def editor_safe(text: str, ctx: FimContext, params: GenerationParams) -> str:
    """The answer without control characters, nor bidirectional controls unless the text
    around the cursor already holds some (sanitize.py)."""
    near = ctx.prefix[-NEAR_CURSOR_CHARS:] + ctx.suffix[:NEAR_CURSOR_CHARS]
    return for_editor(text, keep_bidi=has_bidi(near))


PIPELINE = (stopped, without_overlap, without_trailing_blank_lines, editor_safe)


def shape(text: str, ctx: FimContext, params: GenerationParams) -> str:
    """`text`, the fill a backend wrote for the cursor of `ctx`, through every filter."""
    for step in PIPELINE:
        text = step(text, ctx, params)
    return text


def _wordy(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def cut_at_token(generated: bytes, upcoming: bytes) -> str:
    """The text of `generated`, an answer the time budget cut short, ending on whole words:
    `upcoming` is the token the model would have written next, and a word it would have
    continued (`self.fo` before `obar`) is dropped, as is half a UTF-8 character."""
    text = generated.decode("utf-8", errors="ignore")
    after = (generated + upcoming).decode("utf-8", errors="ignore")[len(text) :]
    if text and after and _wordy(text[-1]) and _wordy(after[0]):
        end = len(text)
        while end > 0 and _wordy(text[end - 1]):
            end -= 1
        return text[:end]
    return text
