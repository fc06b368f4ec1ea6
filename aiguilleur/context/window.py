"""The text around the cursor that a prompt may hold."""

from __future__ import annotations

from aiguilleur.types import ContextChunk, FimContext

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
        extra=extra,
        language=language,
    )
