"""Fill-in-the-middle through a remote model.

OpenRouter's `/completions` does not reliably pass `suffix` to FIM models, so:
- models with known FIM sentinels (Codestral) get a raw `/completions` prompt built from
  them;
- chat models get a chat prompt that shows the code around a hole and asks for the hole
  only, and their answer is cleaned: code fences, prose around them, and text repeating
  what precedes or follows the cursor are removed.
"""

from __future__ import annotations

import re

import msgspec

from aiguilleur.backends.postprocess import trim_overlap
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


# Model id prefixes whose FIM sentinels are known, and how to build the prompt.
def raw_fim_prompt(model: str, prefix: str, suffix: str) -> RawFimPrompt | None:
    name = model.lower()
    if "codestral" in name:
        return RawFimPrompt(f"[SUFFIX]{suffix}[PREFIX]{prefix}", ["[SUFFIX]", "[PREFIX]"])
    if "qwen" in name and "coder" in name:
        return RawFimPrompt(
            f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
            ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"],
        )
    if "deepseek-coder" in name:
        return RawFimPrompt(
            f"<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>", ["<｜fim▁begin｜>"]
        )
    return None


def chat_fim_messages(ctx: FimContext) -> list[ChatMessage]:
    language = ctx.language or language_of(ctx.path)
    lang = f" ({language})" if language else ""
    user = f"File: {ctx.path}{lang}\n\n{ctx.prefix}{HOLE}{ctx.suffix}"
    return [ChatMessage("system", SYSTEM), ChatMessage("user", user)]


_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|$)", re.S)


def clean_chat_answer(answer: str, ctx: FimContext) -> str:
    """The code of a chat model's answer, fitted to the hole."""
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
    text = trim_overlap(text, ctx.suffix)
    if not ctx.suffix.startswith("\n") and ctx.suffix.strip():
        text = text.split("\n", 1)[0]  # mid-line: one line, not a block
    return text.rstrip() if not text.strip() else text.rstrip("\n")
