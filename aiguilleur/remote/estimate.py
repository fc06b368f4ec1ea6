"""What a paid request costs: the bound a budget reserves, and the estimate a user sees.

Two figures per request, never confused:

- **the bound**: the most the request can cost. Its prompt is counted in bytes (a token
  of a byte-level tokenizer, which every model on OpenRouter uses, covers at least one
  byte) and its answer at `max_tokens`. The ledger reserves the bound, so no tokenizer a
  provider bills with, however it splits the text, can take a budget past its limit.
- **the estimate**: what the request will likely cost. Its prompt is counted here without
  a tokenizer (`count_tokens`, one token per word piece: within a few percent of Qwen's
  and SmolLM2's tokenizers on code, at the median), times what the provider billed per
  token counted for the same model before (the ledger's median over its last settles),
  and its answer at the median length of that model's answers for the same feature. A
  user sees it before paying (`~$0.0004` in an action's title), and the ledger keeps it
  beside the settled cost, so that `aiguilleur usage` and `bench/` can say how close it
  was. Before any settle of a model it is the bound, shown as `≤`.
"""

from __future__ import annotations

import math
import re

import msgspec

from aiguilleur.remote.ledger import Learned
from aiguilleur.remote.openrouter import ModelPrice
from aiguilleur.types import ChatMessage

# Tokens a chat message costs beyond its text (role markers and the like), generously.
MESSAGE_OVERHEAD = 16

# Word pieces as BPE tokenizers of code models split them: a word with its leading space
# (long ones in parts), each digit (Qwen's and Llama's tokenizers split numbers), each
# punctuation mark, a run of whitespace, each character outside ASCII.
_PIECE = re.compile(r" ?[A-Za-z]{1,12}|\d| ?[^\w\s]|\s+(?!\S)|\s+|[^\x00-\x7f]")


def count_tokens(text: str) -> int:
    return len(_PIECE.findall(text))


def bound_tokens(texts: list[str]) -> int:
    """The most tokens `texts` (one per message or prompt) can be billed as."""
    return sum(len(t.encode("utf-8")) + MESSAGE_OVERHEAD for t in texts)


def counted_tokens(texts: list[str]) -> int:
    return sum(count_tokens(t) + 4 for t in texts)


def message_texts(messages: list[ChatMessage]) -> list[str]:
    return [m.content for m in messages]


class Price(msgspec.Struct, frozen=True):
    """A request's bound (reserved) and estimate (shown). Until settles of the model have
    taught its tokenizer and the length of its answers to the feature (`learned`), the
    estimate is the bound."""

    bound_usd: float
    estimate_usd: float
    counted_tokens: int
    learned: bool
    # The estimate's parts: the prompt's tokens as the provider will likely bill them,
    # and the answer's (None before anything was learnt).
    prompt_tokens: int | None = None
    answer_tokens: int | None = None

    def label(self) -> str:
        """`~$0.0004` once learned, `≤ $0.0021` before."""
        return f"~${self.estimate_usd:.4f}" if self.learned else f"≤ ${self.bound_usd:.4f}"


def price_request(
    price: ModelPrice, texts: list[str], max_tokens: int, learned: Learned
) -> Price | None:
    """The bound and the estimate of a request of `texts` answered in at most `max_tokens`
    by a model priced `price`; None when its price is unknown or variable."""
    bound = price.worst_case(bound_tokens(texts), max_tokens)
    if bound is None or price.prompt is None or price.completion is None:
        return None
    counted = counted_tokens(texts)
    if learned.prompt_ratio is None or learned.completion_tokens is None:
        return Price(bound, bound, counted, learned=False)
    prompt = math.ceil(counted * learned.prompt_ratio)
    answer = min(max_tokens, learned.completion_tokens)
    estimate = prompt * price.prompt + answer * price.completion + price.request
    return Price(bound, min(bound, estimate), counted, True, prompt, answer)
