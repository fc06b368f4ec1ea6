"""Fill-in-the-middle through a remote model.

OpenRouter's `/completions` does not reliably pass `suffix` to FIM models, so:
- models with known FIM sentinels (Codestral) get a raw `/completions` prompt built from
  them;
- chat models get a chat prompt that shows the code around a hole and asks for the hole
  only, and their answer is fitted to it: code fences, prose around them, and text
  repeating what precedes the cursor are removed (what repeats the text after it goes in
  the answer pipeline, as for every backend).
"""

from __future__ import annotations

import re

import msgspec

from aiguilleur.backends.fim import KNOWN_TEMPLATES
from aiguilleur.languages import language_of
from aiguilleur.types import ChatMessage, FimContext

HOLE = "<|CURSOR|>"

SYSTEM = (
    "You are a code completion engine. You receive a file with one hole marked "
    f"{HOLE}. Reply with exactly the code that belongs in the hole: no explanation, no "
    "markdown fences, nothing that is already before or after the hole. If the hole ends "
    "a line, complete that line (and the block it opens, if any). If nothing belongs "
    "there, reply with nothing."
)


class RawFimPrompt(msgspec.Struct, frozen=True):
    prompt: str
    stop: list[str]


def raw_fim_prompt(model: str, prefix: str, suffix: str) -> RawFimPrompt | None:
    """The raw FIM prompt for a remote `model` whose family's sentinels are known (the
    table the embedded engine uses, fim.KNOWN_TEMPLATES); None for other models."""
    name = model.lower()
    for spec in KNOWN_TEMPLATES:
        if spec.remote_names and all(part in name for part in spec.remote_names):
            prompt, stop = spec.remote_prompt(prefix, suffix)
            return RawFimPrompt(prompt, stop)
    return None


def chat_fim_messages(ctx: FimContext) -> list[ChatMessage]:
    language = ctx.language or language_of(ctx.path)
    lang = f" ({language})" if language else ""
    user = f"File: {ctx.path}{lang}\n\n{ctx.prefix}{HOLE}{ctx.suffix}"
    return [ChatMessage("system", SYSTEM), ChatMessage("user", user)]


_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|$)", re.S)


def fill_from_chat(answer: str, ctx: FimContext) -> str:
    """The code of a chat model's answer, fitted to the hole: what a fill-in-the-middle
    model would have written there. The answer pipeline (answer.py) takes it from there."""
    text = answer
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    text = text.replace(HOLE, "")
    # A model that repeats the current line's start (or more of the prefix) is trimmed.
    line_start = ctx.prefix[ctx.prefix.rfind("\n") + 1 :]
    if line_start and text.startswith(line_start):
        text = text[len(line_start) :]
    elif line_start.strip() and text.lstrip().startswith(line_start.strip()):
        text = text.lstrip()[len(line_start.strip()) :]
    if not ctx.suffix.startswith("\n") and ctx.suffix.strip():
        text = text.split("\n", 1)[0]  # mid-line: one line, not a block
    return text.rstrip() if not text.strip() else text.rstrip("\n")
