"""The text around the cursor that a prompt holds, cut by one rule for every backend.

A feature cuts a generous window in characters (`fim_context`: cheap, and a bound on what
a request carries); a backend fits it to its budget in tokens with `prefix_start` and
`suffix_end`: the embedded engine counts real tokens (backends/fim.py), a remote model
an estimate (`fitted`). Both start the prefix on the same anchor lines, so that it stays
put while the user types and a server's prompt cache keeps it too."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from aiguilleur.types import ContextChunk, FimContext

Count = Callable[[str], int]

# The prefix starts on a line whose absolute number is a multiple of this, so that the
# start does not move (and invalidate the whole KV cache) at every new line typed.
ANCHOR_LINES = 16
# Characters per token for a tokenizer we do not have (a remote model's): code averages
# 3 to 4 in the tokenizers of today's code models.
REMOTE_CHARS_PER_TOKEN = 4

# Characters per token, generously: windows are cut in characters here (cheap), then
# trimmed in real tokens by the backend, which owns the tokenizer.
_CHARS_PER_TOKEN = 8


def fim_context(
    text: str,
    offset: int,
    path: str,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    repository: tuple[ContextChunk, ...] = (),
    extra: tuple[ContextChunk, ...] = (),
    language: str = "",
) -> FimContext:
    """Windows around `offset` (a str index), cut at line starts / ends."""
    start = max(0, offset - prefix_tokens * _CHARS_PER_TOKEN)
    if start > 0:
        nl = text.find("\n", start, offset)
        start = nl + 1 if nl >= 0 else start
    end = min(len(text), offset + suffix_tokens * _CHARS_PER_TOKEN)
    if end < len(text):
        nl = text.rfind("\n", offset, end)
        end = nl + 1 if nl >= 0 else end
    first_line = text.count("\n", 0, start)
    return FimContext(
        path=path,
        prefix=text[start:offset],
        suffix=text[offset:end],
        prefix_first_line=first_line,
        repository=repository,
        extra=extra,
        language=language,
    )


def prefix_start(lines: list[str], first_line: int, budget: int, count: Count) -> int | None:
    """The index of the line of `lines` (the text before the cursor line, `first_line`
    its number in the file) where a prefix of at most `budget` tokens starts: the earliest
    anchor line (every ANCHOR_LINES-th line of the file) that fits, else the earliest line
    that fits (it moves only when a whole line no longer fits, not at every keystroke as a
    window cut in tokens would). None when not even the last line fits."""
    total = 0
    anchor: int | None = None
    any_line: int | None = None
    for i in range(len(lines) - 1, -1, -1):
        total += count(lines[i])
        if total > budget:
            break
        any_line = i
        if (first_line + i) % ANCHOR_LINES == 0 or (i == 0 and first_line == 0):
            anchor = i
    return anchor if anchor is not None else any_line


def suffix_end(lines: list[str], budget: int, count: Count) -> int:
    """How many of `lines` (the text after the cursor) fit `budget` tokens."""
    total = 0
    end = 0
    for line in lines:
        n = count(line)
        if total + n > budget:
            break
        total += n
        end += 1
    return end


def estimated_tokens(line: str) -> int:
    return -(-len(line) // REMOTE_CHARS_PER_TOKEN)


def fitted(ctx: FimContext, prefix_tokens: int, suffix_tokens: int) -> FimContext:
    """`ctx` fitted to a remote model's budgets, its tokens estimated: the lines before
    the cursor line that fit (from an anchor line), the cursor line, the lines after that
    fit. A line longer than the budget is cut in characters, its end kept before the
    cursor and its start after it."""
    cut = ctx.prefix.rfind("\n") + 1
    line = ctx.prefix[cut:][-prefix_tokens * REMOTE_CHARS_PER_TOKEN :]
    before = ctx.prefix[:cut].splitlines(keepends=True)
    budget = prefix_tokens - estimated_tokens(line)
    start = prefix_start(before, ctx.prefix_first_line, budget, estimated_tokens)
    if start is not None:
        kept = "".join(before[start:])
    else:  # one line longer than the budget (minified code): its end
        kept = "".join(before)[-budget * REMOTE_CHARS_PER_TOKEN :] if budget > 0 else ""
    after = ctx.suffix.splitlines(keepends=True)
    end = suffix_end(after, suffix_tokens, estimated_tokens)
    suffix = "".join(after[:end]) if end else ctx.suffix[: suffix_tokens * REMOTE_CHARS_PER_TOKEN]
    return msgspec.structs.replace(ctx, prefix=kept + line, suffix=suffix)
