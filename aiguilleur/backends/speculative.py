"""Greedy decoding with drafts taken from the context (prompt lookup).

Code repeats itself: the next tokens of a suggestion are often already in the prompt (an
identifier defined above, the rest of a line that the suffix holds, a line like the one
before). After each token, the longest recent n-gram that ends the text is looked up
earlier in the prompt and the answer so far; the tokens that followed it there are the
draft. The token and its draft are evaluated in one batch, which on a CPU costs little
more than one token (the weights are read once for all of them), and the draft is kept
as far as the model's own greedy choice agrees with it. The output is the plain greedy
output, token for token: a draft token is used only where argmax picked it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from aiguilleur.backends.llama_native import decode_with_all_logits, forget_from, logits

# Longest n-gram looked up; shorter ones, down to MIN_NGRAM, are tried when it is not found.
# Each drafted token costs an output row (the 151k-token head of a 0.5B model is a quarter
# of its weights): measured on textwrap.py (the replay's file), 0.5B Q4_K_M, 2 threads,
# ms per token: plain 42.9; 1-3-grams with 8-token drafts 61.2 (17 % kept); 2-3-grams, 8
# tokens 46.9 (30 %); 2-3-grams, 4 tokens 38.1 (44 %); 3-4-grams, 8 tokens 37.1 (40 %).
MAX_NGRAM = 3
MIN_NGRAM = 2
# Tokens drafted at most per batch.
MAX_DRAFT = 4


class DraftStats(msgspec.Struct):
    batches: int = 0  # evaluations with a draft
    drafted: int = 0  # draft tokens evaluated
    accepted: int = 0  # draft tokens the model agreed with


def draft(
    history: npt.NDArray[np.intc],
    max_ngram: int = MAX_NGRAM,
    max_draft: int = MAX_DRAFT,
    min_ngram: int = MIN_NGRAM,
) -> npt.NDArray[np.intc]:
    """The tokens that followed the most recent earlier occurrence of the longest n-gram
    (at most `max_ngram` tokens) that ends `history`; empty when none occurs."""
    size = len(history)
    for n in range(min(max_ngram, size - 1), min_ngram - 1, -1):
        tail = history[size - n :]
        hits = history[: size - n] == tail[0]
        for k in range(1, n):
            hits &= history[k : size - n + k] == tail[k]
        found = np.flatnonzero(hits)
        if found.size:
            start = int(found[-1]) + n
            return history[start : start + max_draft]
    return history[:0]


class GreedyDecoder:
    """Feeds accepted tokens to the model and says which token greedy decoding picks next.

    `next()` is the argmax after the last token fed; `feed(token)` commits a token. With
    `speculate`, feeding evaluates a draft along with the token, and a later `feed` of a
    token the draft already holds costs no evaluation at all.
    """

    def __init__(self, llm: Any, history: Sequence[int], speculate: bool) -> None:
        self.llm = llm
        self.speculate = speculate
        self.stats = DraftStats()
        self._history = np.asarray(history, dtype=np.intc)
        self._generated: list[int] = []
        self._preds = [int(np.argmax(logits(llm, 1)[-1]))]
        self._draft: list[int] = []
        self._at = 0  # index in the last batch of the last token fed
        self._base: int = llm.n_tokens - 1  # KV position of that batch's first token

    def next(self) -> int:
        return self._preds[self._at]

    @property
    def length(self) -> int:
        """Tokens in the context once the draft tokens not yet fed are dropped."""
        return self._base + self._at + 1

    def feed(self, token: int) -> None:
        self._generated.append(token)
        at = self._at
        if at < len(self._draft) and self._draft[at] == token:
            self._at = at + 1  # already evaluated with the last batch
            self.stats.accepted += 1
            return
        # The draft went another way: drop what the KV cache holds beyond this point.
        self.llm.n_tokens = self._base + at + 1
        guess: list[int] = []
        if self.speculate:
            history = np.concatenate([self._history, np.asarray(self._generated, np.intc)])
            guess = [int(t) for t in draft(history, MAX_NGRAM, MAX_DRAFT, MIN_NGRAM)]
            room = self.llm.n_ctx() - self.llm.n_tokens - 2
            guess = guess[: max(0, room)]
        batch = [token, *guess]
        self._base = int(self.llm.n_tokens)
        _decode(self.llm, batch)
        self._preds = [int(t) for t in np.argmax(logits(self.llm, len(batch)), axis=1)]
        self._draft = guess
        self._at = 0
        if guess:
            self.stats.batches += 1
            self.stats.drafted += len(guess)

    def settle(self) -> None:
        """Forget the draft tokens after the last one fed: the KV cache and the token list
        must hold the same sequence when the engine reuses or saves them."""
        llm = self.llm
        llm.n_tokens = self.length
        forget_from(llm, llm.n_tokens)


def _decode(llm: Any, tokens: list[int]) -> None:
    """Evaluate `tokens` after llm.n_tokens with logits for every one of them."""
    n_past = llm.n_tokens
    decode_with_all_logits(llm, tokens, n_past)
    llm.input_ids[n_past : n_past + len(tokens)] = tokens
    llm.n_tokens = n_past + len(tokens)
