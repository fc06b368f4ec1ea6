"""Speculative decoding from the context: the plain greedy suggestions, save near-ties."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import numpy as np

from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings
from aiguilleur.backends.speculative import draft
from aiguilleur.types import Completion, FimContext, GenerationParams, Request, RequestKind


def test_the_draft_follows_the_most_recent_longest_match() -> None:
    history = np.array([5, 1, 2, 3, 9, 1, 2, 3, 7, 8, 4, 2, 3], dtype=np.intc)
    # `2 3` ends the history; `1 2 3` does not; the latest `2 3` before the end is
    # followed by 7 8 4 ...
    assert draft(history, max_ngram=3, max_draft=3).tolist() == [7, 8, 4]
    assert draft(np.array([1, 2, 3], dtype=np.intc)).tolist() == []
    # A single token seen before is not enough to draft from, by default.
    assert draft(np.array([4, 5, 6, 4], dtype=np.intc)).tolist() == []


def test_a_longer_match_wins_over_a_more_recent_shorter_one() -> None:
    history = np.array([1, 2, 3, 4, 0, 9, 3, 5, 1, 2, 3], dtype=np.intc)
    assert draft(history, max_ngram=3, max_draft=2).tolist() == [4, 0]


def _requests() -> list[Request]:
    """Cursor places in real code: line starts, mid-line and blocks of stdlib files."""
    import inspect
    import json.decoder
    import textwrap as tw

    rng = random.Random(7)
    out = []
    for module in (tw, json.decoder, inspect):
        source = Path(str(module.__file__)).read_text().splitlines(keepends=True)
        source = source[:400]
        for _ in range(5):
            line = rng.randrange(20, len(source) - 20)
            code = source[line]
            indent = len(code) - len(code.lstrip())
            col = indent + rng.randrange(0, max(1, len(code.strip()) // 2))
            prefix = "".join(source[:line]) + code[:col]
            suffix = code[col:] + "".join(source[line + 1 : line + 30])
            out.append(
                Request(
                    RequestKind.COMPLETION,
                    key=f"r{len(out)}",
                    context=FimContext(path=f"{module.__name__}.py", prefix=prefix, suffix=suffix),
                    params=GenerationParams(
                        max_tokens=32,
                        single_line=bool(code[col:].strip()),
                        min_indent=indent,
                        time_budget_ms=600_000,
                    ),
                    prefix_tokens=256,
                    suffix_tokens=64,
                )
            )
    return out


def _complete_all(model: Path, speculative: bool, requests: list[Request]) -> list[Completion]:
    engine = LlamaEngine(model, EngineSettings(n_ctx=2048, n_threads=1, speculative=speculative))
    try:
        engine.loaded.result(120)
        return [engine.submit(r).result(300) for r in requests]
    finally:
        engine.close()
        engine.join(30)


def test_speculative_decoding_gives_the_plain_greedy_suggestions(qwen_model: Path) -> None:
    requests = _requests()
    repeat = textwrap.dedent(
        """\
        def area(width, height):
            return width * height


        def volume(width, height, depth):
            return """
    )
    requests.append(
        Request(
            RequestKind.COMPLETION,
            key="repeat",
            context=FimContext(path="shapes.py", prefix=repeat, suffix="\n"),
            params=GenerationParams(max_tokens=16, single_line=True, time_budget_ms=600_000),
        )
    )
    plain = _complete_all(qwen_model, False, requests)
    fast = _complete_all(qwen_model, True, requests)
    assert all(p.usage.drafted_tokens == 0 for p in plain)
    same = [
        (f.text, f.usage.completion_tokens) == (p.text, p.usage.completion_tokens)
        for p, f in zip(plain, fast, strict=True)
    ]
    # Batched evaluation rounds differently from one token at a time, so at a near-tie
    # the two may part (seen: 1 of these 17); more than that is a decoding bug.
    assert sum(same) >= len(requests) - 2, [
        r.key for r, ok in zip(requests, same, strict=True) if not ok
    ]
    # The drafts were really used, not skipped: else the comparison proves nothing.
    assert sum(f.usage.accepted_tokens for f in fast) >= 10
    assert fast[-1].text.startswith("width * height * depth"), fast[-1].text
