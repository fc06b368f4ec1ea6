from __future__ import annotations

from pathlib import Path

from aiguilleur.backends.fim import (
    FimTokens,
    TokenCounter,
    build_prompt,
    resolve_fim_tokens,
    trim_prefix,
)
from aiguilleur.types import ContextChunk, FimContext


def byte_tokens(text: str) -> list[int]:
    return list(text.encode())


COUNT = TokenCounter(byte_tokens)


def test_prefix_window_start_does_not_move_while_typing_a_new_line() -> None:
    lines = [f"line {i:03d}\n" for i in range(100)]
    prefix = "".join(lines)
    first = trim_prefix(prefix, 0, 300, COUNT, byte_tokens)
    second = trim_prefix(prefix + "x = 1\n", 0, 300, COUNT, byte_tokens)
    assert len(first) <= 300 and len(second) <= 300
    # Same start: the second prompt extends the first, so the KV cache is reused.
    assert second[: len(first)] == first
    assert bytes(first).decode().startswith("line ")
    assert int(bytes(first).decode()[5:8]) % 16 == 0


def test_prompt_order_puts_stable_context_first() -> None:
    fim = FimTokens("gguf", pre=1000, suf=1001, mid=1002, rep=1003, sep=1004)
    ctx = FimContext("a.py", "def f():\n    ", "\n", extra=(ContextChunk("b.py", "B = 1\n"),))
    prompt = build_prompt(
        ctx, fim, byte_tokens, COUNT, prefix_tokens=100, suffix_tokens=10, extra_tokens=100
    )
    t = prompt.tokens
    assert t[0] == 1003 and t.count(1004) == 2
    assert t.index(1000) < t.index(1001) < t.index(1002)
    assert t[: prompt.stable_tokens][-1] == 1000
    # The cursor line's start comes last, after the middle token.
    assert bytes(t[t.index(1002) + 1 :]) == b"    "
    assert bytes(t[prompt.stable_tokens : prompt.prefix_end]) == b"def f():\n"


def test_the_repository_block_comes_first_each_part_within_its_own_budget() -> None:
    fim = FimTokens("gguf", pre=1000, suf=1001, mid=1002, rep=1003, sep=1004)
    block = (ContextChunk("lib/db.py", "class User:\n    def rename(self): ...\n"),)
    ring = (ContextChunk("b.py", "B = 1\n"), ContextChunk("c.py", "C = 2\n" * 40))
    ctx = FimContext("a.py", "u.", "\n", repository=block, extra=ring)

    def text(repository_tokens: int, extra_tokens: int) -> str:
        tokens = build_prompt(
            ctx,
            fim,
            byte_tokens,
            COUNT,
            prefix_tokens=100,
            suffix_tokens=10,
            extra_tokens=extra_tokens,
            repository_tokens=repository_tokens,
        ).tokens
        return bytes(t if t < 256 else ord("|") for t in tokens).decode()

    full = text(200, 100)
    assert full.index("|lib/db.py") < full.index("|b.py\nB = 1") < full.index("|a.py\n")
    assert "c.py" not in full  # past the ring's budget; the block's does not count there
    assert "|lib/db.py" not in text(20, 100) and "|b.py" in text(20, 100)
    assert "|lib/db.py" in text(200, 0) and "|b.py" not in text(200, 0)
    assert "project" not in text(0, 0)  # no chunk: no repository header either
    # A block larger than its budget keeps the whole lines of its head that fit.
    assert "|lib/db.py\nclass User:\n|" in text(40, 0) and "rename" not in text(40, 0)


def test_typing_on_a_line_changes_only_the_end_of_the_prompt() -> None:
    fim = FimTokens("gguf", pre=1000, suf=1001, mid=1002)
    after = "\n    return x\n\n\ndef g():\n    pass\n"

    def prompt(typed: str) -> list[int]:
        ctx = FimContext("a.py", "def f(x):\n    y = x" + typed, after)
        return build_prompt(
            ctx, fim, byte_tokens, COUNT, prefix_tokens=100, suffix_tokens=50, extra_tokens=0
        ).tokens

    before, typed = prompt(""), prompt(" +")
    # The keystroke only appended tokens: the suffix before them stays cached.
    assert typed[: len(before)] == before and bytes(typed[len(before) :]) == b" +"


def test_known_template_is_used_when_the_gguf_has_no_fim_metadata() -> None:
    vocab = {"<fim_prefix>": 5, "<fim_suffix>": 6, "<fim_middle>": 7, "<file_sep>": 8}
    fim = resolve_fim_tokens([-1] * 6, -1, [2], vocab.get)
    assert fim is not None and fim.source == "starcoder2"
    assert (fim.pre, fim.suf, fim.mid, fim.sep) == (5, 6, 7, 8)
    assert 8 in fim.stops and 2 in fim.stops
    assert resolve_fim_tokens([-1] * 6, -1, [2], {}.get) is None


def test_without_an_anchor_in_reach_the_window_still_starts_at_a_stable_line() -> None:
    # Cursor at line 12: anchor line 0 does not fit, and there is no other anchor above.
    lines = [f"value_{i:02d} = {'x' * 30}\n" for i in range(12)]
    prefix = "".join(lines) + "tail = 1"
    first = trim_prefix(prefix, 0, 300, COUNT, byte_tokens)
    typed = trim_prefix(prefix + "2", 0, 300, COUNT, byte_tokens)
    assert bytes(first).decode().startswith("value_")  # a whole line, not a cut token run
    assert typed[: len(first)] == first  # one more keystroke keeps the prompt's prefix


def test_healing_cuts_where_the_real_tokenizer_would_if_the_text_went_on(
    qwen_model: Path,
) -> None:
    from llama_cpp import Llama

    from aiguilleur.backends.fim import heal_cut

    vocab = Llama(str(qwen_model), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return list(vocab.tokenize(text.encode(), add_bos=False, special=False))

    def text_of(token: int) -> bytes:
        return bytes(vocab.detokenize([token]))

    for line, kept, healed in [
        # Alone, twelve spaces are one token; before a word, eleven and ` word`.
        (" " * 12, " " * 11, " "),
        ("x = ", "x =", " "),  # the space goes with the word that comes
        ("    ret", "   ", " ret"),  # the word may grow into ` return`
        # `retu` + `a` tokenizes as ` ret` + `ua`: still never cut inside the word.
        (" " * 12 + "retu", " " * 11, " retu"),
        ("    return len", "    return", " len"),
    ]:
        tokens, heal = heal_cut(line, tokenize, text_of)
        assert b"".join(text_of(t) for t in tokens) == kept.encode(), line
        assert heal == healed.encode(), line


def test_a_vocabulary_whose_pieces_do_not_spell_the_text_is_not_healed(tmp_path: Path) -> None:
    """The random-weight Qwen-shaped model writes spaces as U+2581 in a byte-level
    vocabulary: healing would spell the whole line again, one evaluation per token."""
    from llama_cpp import Llama

    from aiguilleur.backends.fim import heal_cut
    from aiguilleur.backends.synthetic import TINY, ensure_model

    vocab = Llama(str(ensure_model(tmp_path, TINY)), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return list(vocab.tokenize(text.encode(), add_bos=False, special=False))

    def text_of(token: int) -> bytes:
        return bytes(vocab.detokenize([token]))

    line = "    if chunks and len(chunks[-1]) > width"
    assert b"".join(text_of(t) for t in tokenize(line)) != line.encode()  # (as said above)
    tokens, heal = heal_cut(line, tokenize, text_of)
    assert (tokens, heal) == (tokenize(line), b"")
