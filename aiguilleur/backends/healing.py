"""Token healing: the prompt stops at the last whole token before the cursor, and the
first generated tokens must spell what was cut.

The text before the cursor rarely ends where the model's tokenizer would cut: Qwen writes
`    return` as `'   ' + ' return'`, yet the bare indentation `'    '` is one token; after
it the model, never having seen `'    '` followed by `'return'`, writes `' return'`, one
space too deep (and after `x = ` it writes `' 1'`: a doubled space). Backing the prompt off
by its last token and letting the model choose how to spell it (constrained to agree with
the text that was cut) gives it the token boundary it was trained on.
"""

from __future__ import annotations

import bisect
from typing import Any

from aiguilleur.backends import llama_native as native


def _upper(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class VocabIndex:
    """The vocabulary's token texts as bytes, sorted, to find the tokens that agree with
    a text. Built once per loaded model (about 0.3 s for 150k tokens)."""

    def __init__(self, llm: Any) -> None:
        import ctypes

        import llama_cpp
        import numpy as np

        vocab = native.vocab(llm)
        buf = ctypes.create_string_buffer(512)
        pieces: list[bytes] = []
        for token in range(llm.n_vocab()):
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
            usable = n > 0 and not llama_cpp.llama_vocab_is_control(vocab, token)
            pieces.append(buf.raw[:n] if usable else b"")
        self._pieces = pieces
        order = sorted((t for t, p in enumerate(pieces) if p), key=pieces.__getitem__)
        self._sorted = [pieces[t] for t in order]
        self._ids = np.array(order, dtype=np.int64)

    def piece(self, token: int) -> bytes:
        return self._pieces[token]

    def agreeing(self, rest: bytes) -> Any:
        """Ids of the tokens whose text is a proper prefix of `rest` or starts with it."""
        import numpy as np

        lo = bisect.bisect_left(self._sorted, rest)
        upper = _upper(rest)
        hi = len(self._sorted) if upper is None else bisect.bisect_left(self._sorted, upper)
        shorter = []
        for k in range(1, len(rest)):
            i = bisect.bisect_left(self._sorted, rest[:k])
            while i < len(self._sorted) and self._sorted[i] == rest[:k]:
                shorter.append(self._ids[i])
                i += 1
        return np.concatenate([self._ids[lo:hi], np.array(shorter, dtype=np.int64)])
