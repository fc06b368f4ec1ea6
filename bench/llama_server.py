"""Arm (c) of the replay bench: llama-server's `/infill` with `cache_prompt` (as llama.vim
uses it), on the same model file and the same prefix/suffix text per keystroke.

The prefix and suffix are cut exactly as aiguilleur cuts them (same character windows,
same token budgets, same line anchoring) and sent as `input_prefix`/`input_suffix`; the
server is started with a logical batch large enough that its own 3:1 infill trimming keeps
all of it, and a context too small for its `[FIM_REP]myproject` header, so the token
sequence it evaluates is the one aiguilleur evaluates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from aiguilleur.backends.fim import TokenCounter, trim_prefix, trim_suffix
from aiguilleur.commands.replay import Keystroke, typing_states
from aiguilleur.context.window import fim_context
from tests.support.llama_server import LlamaServerProcess


def llama_vim_server(
    binary: str, model: Path, n_ctx: int, n_ubatch: int, threads: int
) -> LlamaServerProcess:
    """A one-slot llama-server as llama.vim's README starts it, with a logical batch
    large enough that its own 3:1 infill trimming keeps all of aiguilleur's windows, and
    chunks of KV reused where they moved in the prompt (`--cache-reuse`)."""
    extra = ("-b", str(n_ctx), "-ub", str(n_ubatch), "--cache-reuse", "256")
    return LlamaServerProcess(
        Path(binary), model, n_ctx=n_ctx, slots=1, threads=threads, extra=extra
    )


def run_llama_server_arm(
    binary: str,
    model: Path,
    source: Path,
    function: str,
    completion: dict[str, Any],
    n_ctx: int,
    n_ubatch: int,
    keystrokes: int,
    threads: int,
) -> list[Keystroke]:
    server = llama_vim_server(binary, model, n_ctx, n_ubatch, threads)  # as arm (a)
    server.start()
    try:
        return llama_vim_keystrokes(server.url, model, source, function, completion, keystrokes)
    finally:
        server.stop()


def llama_vim_keystrokes(
    url: str,
    model: Path,
    source: Path,
    function: str,
    completion: dict[str, Any],
    keystrokes: int,
    slot: int = 0,
    headers: dict[str, str] | None = None,
) -> list[Keystroke]:
    """Retype `function` of `source` against the llama-server at `url` as llama.vim does:
    an /infill request per keystroke, with `cache_prompt` on its slot."""
    from llama_cpp import Llama

    vocab = Llama(str(model), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return list(vocab.tokenize(text.encode(), add_bos=False, special=False))

    def text_of(tokens: list[int]) -> str:
        return bytes(vocab.detokenize(tokens)).decode("utf-8", errors="replace")

    count = TokenCounter(tokenize)
    results: list[Keystroke] = []
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(120.0)) as http:
        for state in typing_states(source.read_text(), function, keystrokes):
            ctx = fim_context(
                state.text,
                state.offset,
                str(source),
                prefix_tokens=completion["prefix_tokens"],
                suffix_tokens=completion["suffix_tokens"],
            )
            # As llama.vim sends it: the lines before the cursor line, that line's
            # text before the cursor as `prompt`, the text after as the suffix.
            cut = ctx.prefix.rfind("\n") + 1
            line_part = ctx.prefix[cut:]
            budget = completion["prefix_tokens"] - len(tokenize(line_part))
            prefix = trim_prefix(ctx.prefix[:cut], ctx.prefix_first_line, budget, count, tokenize)
            suffix = trim_suffix(ctx.suffix, completion["suffix_tokens"], count, tokenize)
            body = {
                "id_slot": slot,
                "input_prefix": text_of(prefix),
                "input_suffix": text_of(suffix),
                "input_extra": [],
                "prompt": line_part,
                "n_predict": completion["max_tokens"],
                # A line indented less than the cursor line ends the suggestion.
                "n_indent": len(line_part) - len(line_part.lstrip(" \t")),
                "cache_prompt": True,
                "temperature": 0,
                "top_k": 1,
                "samplers": ["top_k"],
            }
            t0 = time.perf_counter()
            r = http.post("/infill", json=body)
            latency = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            out = r.json()
            t = out.get("timings", {})
            evaluated = int(t.get("prompt_n", 0))
            cached = int(t.get("cache_n", out.get("tokens_cached", 0)))
            results.append(
                Keystroke(
                    index=state.index,
                    line=state.line,
                    character=state.character,
                    typed=state.typed,
                    suggestion=str(out.get("content", "")),
                    latency_ms=latency,
                    prompt_tokens=evaluated + cached,
                    evaluated_tokens=evaluated,
                    reused_tokens=cached,
                    completion_tokens=int(t.get("predicted_n", 0)),
                    prompt_ms=float(t.get("prompt_ms", 0.0)),
                    generation_ms=float(t.get("predicted_ms", 0.0)),
                    queue_ms=0.0,
                    server_ms=0.0,
                    typed_through=False,
                    answered=True,
                )
            )
    return results
