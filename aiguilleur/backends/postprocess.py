"""Shaping generated code: where to stop, and what not to repeat."""

from __future__ import annotations

from aiguilleur.types import GenerationParams


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


def shape_answer(text: str, suffix: str, params: GenerationParams) -> str:
    """An answer that arrived whole (a remote model's raw fill-in-the-middle), shaped as
    the engine shapes its own while it streams and after: cut by the stop rules (the end
    of the line, or the end of the cursor's block), then without what repeats the text
    after the cursor."""
    cut = stop_point(text, single_line=params.single_line, min_indent=params.min_indent)
    if cut is not None:
        text = text[:cut]
    return trim_overlap(text, suffix)


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
