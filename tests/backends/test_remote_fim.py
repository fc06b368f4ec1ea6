"""Fill-in-the-middle prompts for remote models and the cleaning of chat answers."""

from __future__ import annotations

import pytest

from aiguilleur.backends.answer import shape
from aiguilleur.backends.remote_fim import (
    HOLE,
    chat_fim_messages,
    fill_from_chat,
    raw_fim_prompt,
)
from aiguilleur.types import FimContext, GenerationParams

BLOCK = FimContext("m.py", "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n")
MIDLINE = FimContext("m.py", "total = add(", ") * 2\n")


@pytest.mark.parametrize(
    ("answer", "ctx", "expected"),
    [
        ("return a + b", BLOCK, "return a + b"),
        ("```python\nreturn a + b\n```", BLOCK, "return a + b"),
        ("Here is the code:\n```\nreturn a + b\n```\nIt adds.", BLOCK, "return a + b"),
        ("    return a + b\n", BLOCK, "return a + b"),  # repeated the line's indentation
        ("1, 2\nmore lines", MIDLINE, "1, 2"),  # mid-line: one line only
        (f"1, 2{HOLE}", MIDLINE, "1, 2"),
        ("", BLOCK, ""),
    ],
)
def test_chat_answers_are_cut_to_the_hole(answer: str, ctx: FimContext, expected: str) -> None:
    assert fill_from_chat(answer, ctx) == expected


def test_a_chat_answer_then_gets_the_pipeline_every_answer_gets() -> None:
    # Repeating the suffix, and writing past the block: what the engine would not show.
    said = "```python\nreturn a + b\n\nprint(add(1, 2))\n```"
    fill = fill_from_chat(said, BLOCK)
    assert shape(fill, BLOCK, GenerationParams(min_indent=4)) == "return a + b"


def test_chat_prompt_marks_the_hole_and_names_the_file() -> None:
    system, user = chat_fim_messages(BLOCK)
    assert system.role == "system" and HOLE in system.content
    assert user.content.endswith(f"def add(a, b):\n    {HOLE}\n\nprint(add(1, 2))\n")
    assert "m.py (Python)" in user.content


def test_fim_models_get_their_own_sentinels() -> None:
    codestral = raw_fim_prompt("mistralai/codestral-2508", "pre", "suf")
    assert codestral is not None and codestral.prompt == "[SUFFIX]suf[PREFIX]pre"
    qwen = raw_fim_prompt("qwen/qwen-2.5-coder-32b-instruct", "pre", "suf")
    assert qwen is not None and qwen.prompt.startswith("<|fim_prefix|>pre<|fim_suffix|>suf")
    assert raw_fim_prompt("anthropic/claude-sonnet-4", "pre", "suf") is None
    deepseek = raw_fim_prompt("deepseek/deepseek-coder-v2", "pre", "suf")
    assert (
        deepseek is not None
        and deepseek.prompt == "<｜fim▁begin｜>pre<｜fim▁hole｜>suf<｜fim▁end｜>"
    )
    # Each stops where its own sentinels would start the prompt over.
    assert codestral.stop == ["[SUFFIX]", "[PREFIX]"]
    assert qwen.stop == ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"]


def test_the_sentinels_come_from_the_table_the_engine_uses() -> None:
    from aiguilleur.backends.fim import KNOWN_TEMPLATES

    remote = [t for t in KNOWN_TEMPLATES if t.remote_names]
    assert {t.family for t in remote} == {"qwen2.5-coder", "deepseek-coder", "codestral"}
    qwen = next(t for t in remote if t.family == "qwen2.5-coder")
    prompt = raw_fim_prompt("qwen/qwen-2.5-coder-32b-instruct", "a", "b")
    assert prompt is not None and prompt.prompt == f"{qwen.pre}a{qwen.suf}b{qwen.mid}"
