"""The one module that reaches under llama-cpp-python's `Llama`.

The high-level `Llama` object offers no public way to what the engine needs of llama.cpp's
C API: sequence state in and out (the KV store), logits of every token of a batch
(speculative decoding), the vocabulary handle (end-of-generation tests, token healing),
the context a model was trained for. Its private `_ctx`, `_model` and `_batch` hold those
handles; only this module touches them, so an upgrade of llama-cpp-python that renames
them breaks one file, and its tests say so at once.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


def vocab(llm: Any) -> Any:
    """The `llama_vocab *` the C API's token functions take."""
    return llm._model.vocab


def context(llm: Any) -> Any:
    """The `llama_context *` the C API's state and logits functions take."""
    return llm._ctx.ctx


def n_ctx_train(llm: Any) -> int:
    return int(llm._model.n_ctx_train())


def token_text(llm: Any, token: int) -> str:
    """A token's text as the vocabulary stores it (special tokens by their name)."""
    if token < 0:
        return ""
    text = llm._model.token_get_text(token)
    return bytes(text.encode("utf-8", "replace")).decode("utf-8", "replace")


def forget_from(llm: Any, n_past: int) -> None:
    """Drop the KV cache's cells from position `n_past` on, in every sequence."""
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)


def decode_with_all_logits(llm: Any, tokens: list[int], n_past: int) -> None:
    """Evaluate `tokens` at positions `n_past`... keeping the logits of every one of them
    (`Llama.eval` keeps only the last's unless the model was loaded for all)."""
    forget_from(llm, n_past)
    llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)


def logits(llm: Any, rows: int) -> Any:
    """The last evaluation's logits, `rows` x n_vocab (a numpy view, valid until the
    next evaluation): one row per token that asked for them."""
    import llama_cpp

    ctx = context(llm)
    ptr = llama_cpp.llama_get_logits_ith(ctx, -1) if rows == 1 else llama_cpp.llama_get_logits(ctx)
    return np.ctypeslib.as_array(
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(rows, llm.n_vocab())
    )


def last_logits(llm: Any) -> Any:
    """The logits after the last evaluated token (a numpy view, valid until the next eval)."""
    return logits(llm, 1)[0]


def set_threads(llm: Any, threads: int) -> None:
    """Generation and prompt evaluation from the next evaluation on run on `threads`
    (llama.cpp's public llama_set_n_threads; the `Llama` object only sets them at load)."""
    import llama_cpp

    llama_cpp.llama_set_n_threads(context(llm), threads, threads)
    llm.n_threads = llm.n_threads_batch = threads


def argmax(llm: Any) -> int:
    """The most likely next token after the last evaluated one (greedy decoding's pick)."""
    return int(np.argmax(last_logits(llm)))
