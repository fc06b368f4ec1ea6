"""Fill-in-the-middle prompts built as token lists from the model's own FIM tokens.

llama-cpp-python's `create_completion(suffix=...)` puts token 0 where the FIM tokens
belong, so the prompt is assembled here, token by token, in the order llama-server's
/infill uses: [BOS] extra-context [PRE] prefix [SUF] suffix [MID]. The extra context (the
repository block, then the ring of other files) and the start of the prefix come first and
change rarely, so consecutive keystrokes share a long token prefix that the engine does
not evaluate again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from aiguilleur.context.window import prefix_start, suffix_end
from aiguilleur.types import ContextChunk, FimContext, FimTokens, Request

Tokenize = Callable[[str], list[int]]

# Tokens kept free at the end of the context for generation, beyond max_tokens.
CTX_MARGIN = 8

# Separator between extra-context chunks for models without a file-separator token
# (the one llama-server uses).
SNIPPET_SEPARATOR = "\n\n--- snippet ---\n\n"


class FimTemplateSpec(msgspec.Struct, frozen=True):
    """The FIM sentinels of a known model family: for the embedded engine when the GGUF
    lacks fim_* metadata, and for the raw prompt a remote model of the family gets."""

    family: str
    pre: str
    suf: str
    mid: str
    pad: str | None = None
    rep: str | None = None
    sep: str | None = None
    # Extra end-of-generation tokens beyond the vocabulary's EOS/EOT.
    stops: tuple[str, ...] = ()
    # How a remote model id of this family reads (every part in it, lowercase); none for
    # the families whose raw FIM through a remote API is not known to work.
    remote_names: tuple[str, ...] = ()
    # The remote API wants the suffix first and no middle sentinel (Codestral's).
    suffix_first: bool = False

    def remote_prompt(self, prefix: str, suffix: str) -> tuple[str, list[str]]:
        """The raw prompt for a remote model of this family, and its stop strings."""
        if self.suffix_first:
            return f"{self.suf}{suffix}{self.pre}{prefix}", [self.suf, self.pre, *self.stops]
        prompt = f"{self.pre}{prefix}{self.suf}{suffix}{self.mid}"
        return prompt, [self.pre, self.suf, self.mid, *self.stops]


KNOWN_TEMPLATES: tuple[FimTemplateSpec, ...] = (
    FimTemplateSpec(
        "qwen2.5-coder",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        pad="<|fim_pad|>",
        rep="<|repo_name|>",
        sep="<|file_sep|>",
        stops=("<|endoftext|>",),
        remote_names=("qwen", "coder"),
    ),
    FimTemplateSpec(
        "codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", sep="<|file_separator|>"
    ),
    FimTemplateSpec(
        "starcoder2",
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        pad="<fim_pad>",
        rep="<repo_name>",
        sep="<file_sep>",
    ),
    FimTemplateSpec(
        "deepseek-coder",
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        remote_names=("deepseek-coder",),
    ),
    FimTemplateSpec("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", stops=("▁<EOT>",)),
    FimTemplateSpec(
        "codestral",
        "[PREFIX]",
        "[SUFFIX]",
        "[MIDDLE]",
        remote_names=("codestral",),
        suffix_first=True,
    ),
)


class FimPrompt(msgspec.Struct, frozen=True):
    tokens: list[int]
    # Tokens before the cursor-dependent part: the stable part of the prompt.
    stable_tokens: int
    # Tokens up to the end of the lines before the cursor line (before the FIM suffix
    # token): what an idle prefill evaluates.
    prefix_end: int
    # The end of the text before the cursor, left out of the prompt: the answer must start
    # by spelling it (token healing, see healing.py).
    heal: bytes = b""


# What the text before the cursor is assumed to go on with when finding where to cut it:
# a letter, as when a word follows an indentation, a space or an operator.
_PROBE = "a"


def heal_cut(
    line: str, tokenize: Tokenize, piece: Callable[[int], bytes]
) -> tuple[list[int], bytes]:
    """The tokens of `line` (the cursor line up to the cursor) up to the last boundary the
    tokenizer would keep if the text went on, and the rest, to be healed.

    Qwen's tokenizer writes twelve spaces alone as one token but twelve spaces and a word
    as eleven spaces and ` word`: cut where the text-that-goes-on would be cut, and always
    before the last token, which may yet merge with what comes.

    A vocabulary whose pieces do not spell the text they tokenize (some converted or
    synthetic GGUFs write spaces as U+2581 in a byte-level vocabulary) cannot be healed:
    every cut would fall at the line's start, and the whole line would be spelled again
    one evaluation per token (a 2,000-token restart's first suggestion took 2.7 s so
    instead of 0.5). Such a line is tokenized whole."""
    data = line.encode("utf-8")
    plain = tokenize(line)
    if b"".join(piece(t) for t in plain) != data:
        return plain, b""
    tokens = tokenize(line + _PROBE)
    while tokens:
        done = b"".join(piece(t) for t in tokens)
        # Never inside a word: `retu` + `a` may tokenize as ` ret` + `ua`, yet the word
        # is going to be ` return`, one token, which only a cut before it lets come.
        inside_word = _word_byte(done[-1:]) and _word_byte(data[len(done) : len(done) + 1])
        if len(done) < len(data) and data.startswith(done) and not inside_word:
            return tokens, data[len(done) :]
        tokens.pop()
    return [], data


def _word_byte(b: bytes) -> bool:
    return b.isalnum() or b == b"_"


class TokenCounter:
    """Counts tokens per line, memoised: most lines are the same from keystroke to keystroke."""

    def __init__(self, tokenize: Tokenize, capacity: int = 50_000) -> None:
        self._tokenize = tokenize
        self._capacity = capacity
        self._cache: dict[str, int] = {}

    def __call__(self, line: str) -> int:
        n = self._cache.get(line)
        if n is None:
            if len(self._cache) >= self._capacity:
                self._cache.clear()
            n = len(self._tokenize(line))
            self._cache[line] = n
        return n


def trim_prefix(
    prefix: str, first_line: int, budget: int, count: TokenCounter, tokenize: Tokenize
) -> list[int]:
    """Tokens of the end of `prefix` that fit `budget`, from the line where the one rule
    of context/window.py starts it (prefix_start)."""
    if budget <= 0 or not prefix:
        return []
    lines = prefix.splitlines(keepends=True)
    start = prefix_start(lines, first_line, budget, count)
    if start is not None:
        return tokenize("".join(lines[start:]))
    # One line longer than the budget (minified code): keep its last tokens.
    return tokenize(prefix)[-budget:]


def trim_suffix(suffix: str, budget: int, count: TokenCounter, tokenize: Tokenize) -> list[int]:
    """Tokens of the lines of `suffix` that fit `budget` (suffix_end)."""
    if budget <= 0 or not suffix:
        return []
    lines = suffix.splitlines(keepends=True)
    end = suffix_end(lines, budget, count)
    if end == 0:
        return tokenize(suffix)[:budget]
    return tokenize("".join(lines[:end]))


def build_prompt(
    ctx: FimContext,
    fim: FimTokens,
    tokenize: Tokenize,
    count: TokenCounter,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    extra_tokens: int,
    repository_tokens: int = 0,
    token_text: Callable[[int], bytes] | None = None,
    tokenize_chunk: Tokenize | None = None,
) -> FimPrompt:
    """The prompt for `ctx`. With `token_text`, the end of the cursor line is cut for token
    healing (heal_cut) and returned as `heal`. `tokenize_chunk` tokenizes the chunks of
    other files (they come back unchanged from keystroke to keystroke: a memo pays)."""
    chunk_tokens = tokenize_chunk or tokenize
    head: list[int] = [fim.bos] if fim.bos >= 0 else []
    extra: list[int] = []
    # The repo-level header and the cursor file's name go only with a chunk; the header
    # counts against the block's budget, the name against the ring's.
    header = [fim.rep, *tokenize("project\n")] if fim.rep >= 0 else []
    footer = [fim.sep, *tokenize(f"{ctx.path}\n")] if fim.sep >= 0 else []
    block = _chunks(ctx.repository, fim, chunk_tokens, repository_tokens - len(header), cut=True)
    ring = _chunks(
        ctx.extra, fim, chunk_tokens, extra_tokens - len(footer) - (0 if block else len(header))
    )
    if block or ring:
        extra = [*header, *block, *ring, *footer]
    # The cursor line's text before the cursor goes after the middle token, as the start
    # of a middle the model is writing (FIM training spans start at line starts too):
    # typing on a line then changes only the last tokens of the prompt, and the suffix,
    # which comes before them, stays in the KV cache instead of being re-evaluated at
    # every keystroke (llama.cpp's /infill puts it at the end of the prefix instead).
    cut = ctx.prefix.rfind("\n") + 1
    line = ctx.prefix[cut:]
    heal = b""
    current: list[int] = []
    if line and token_text is not None:
        current, heal = heal_cut(line, tokenize, token_text)
    elif line:
        current = tokenize(line)
    if len(current) > prefix_tokens:  # one giant line (minified code)
        current = current[-prefix_tokens:]
    budget = prefix_tokens - len(current)
    prefix = trim_prefix(ctx.prefix[:cut], ctx.prefix_first_line, budget, count, tokenize)
    suffix = trim_suffix(ctx.suffix, suffix_tokens, count, tokenize)
    stable = len(head) + len(extra) + 1
    tokens = [*head, *extra, fim.pre, *prefix, fim.suf, *suffix, fim.mid, *current]
    return FimPrompt(tokens, stable, stable + len(prefix), heal)


def fitted_prompt(
    req: Request,
    fim: FimTokens,
    n_ctx: int,
    tokenize: Tokenize,
    count: TokenCounter,
    *,
    token_text: Callable[[int], bytes] | None,
    tokenize_chunk: Tokenize | None = None,
) -> tuple[FimPrompt, list[int]]:
    """The prompt for `req` in a context of `n_ctx` tokens (the engine's, or a shared
    server's slot), and its tokens cut to fit: the same prompt for every backend that
    takes tokens. The cursor's windows come first; what they leave goes to the repository
    block, then to the ring."""
    room = n_ctx - req.params.max_tokens - CTX_MARGIN
    budget = max(16, min(req.prefix_tokens, room - req.suffix_tokens))
    left = max(0, room - req.suffix_tokens - budget)
    repository = min(req.repository_tokens, left)
    extra = max(0, min(req.extra_tokens, left - repository))
    prompt = build_prompt(
        req.context,
        fim,
        tokenize,
        count,
        prefix_tokens=budget,
        suffix_tokens=req.suffix_tokens,
        extra_tokens=extra,
        repository_tokens=repository,
        token_text=token_text,
        tokenize_chunk=tokenize_chunk,
    )
    tokens = prompt.tokens
    if len(tokens) > room:  # only when the budgets themselves exceed the context
        tokens = tokens[-room:]
    return prompt, tokens


def _chunks(
    chunks: tuple[ContextChunk, ...],
    fim: FimTokens,
    tokenize: Tokenize,
    budget: int,
    *,
    cut: bool = False,
) -> list[int]:
    """The tokens of the chunks that fit `budget`, in order, up to the first that does
    not: a later one fitting instead would change the prompt's head as the user types.
    With `cut`, that first chunk's whole lines that fit go in too (the repository
    block's size is estimated in characters; its head matters most)."""
    out: list[int] = []

    def piece(chunk: ContextChunk, text: str) -> list[int]:
        if fim.sep >= 0:
            return [fim.sep, *tokenize(f"{chunk.path}\n{text}")]
        return tokenize(f"{SNIPPET_SEPARATOR}{text}")

    for chunk in chunks:
        tokens = piece(chunk, chunk.text)
        if len(out) + len(tokens) <= budget:
            out += tokens
            continue
        if cut:  # the most lines that fit: a binary search, a few tokenizations
            lines = chunk.text.splitlines(keepends=True)
            fits, low, high = [], 1, len(lines) - 1
            while low <= high:
                mid = (low + high) // 2
                tokens = piece(chunk, "".join(lines[:mid]))
                if len(out) + len(tokens) <= budget:
                    fits, low = tokens, mid + 1
                else:
                    high = mid - 1
            out += fits
        break
    return out


def resolve_fim_tokens(
    gguf_ids: Sequence[int],
    bos: int,
    end_ids: Sequence[int],
    single_token: Callable[[str], int | None],
) -> FimTokens | None:
    """FIM tokens from the GGUF's metadata, else from the first known template whose
    token texts are all single tokens of this vocabulary; None if neither works.

    `gguf_ids` are (pre, suf, mid, pad, rep, sep) as llama_vocab_fim_* report them.
    """
    pre, suf, mid, pad, rep, sep = gguf_ids
    stops = {t for t in (*end_ids, pad, rep, sep) if t >= 0}
    if min(pre, suf, mid) >= 0:
        return FimTokens("gguf", pre, suf, mid, pad, rep, sep, bos, frozenset(stops | {pre, suf}))
    for spec in KNOWN_TEMPLATES:
        ids = [single_token(t) for t in (spec.pre, spec.suf, spec.mid)]
        if any(i is None for i in ids):
            continue
        p, s, m = (i for i in ids if i is not None)
        opt = [single_token(t) if t else None for t in (spec.pad, spec.rep, spec.sep)]
        pad_, rep_, sep_ = (-1 if i is None else i for i in opt)
        extra_stops = {single_token(t) for t in spec.stops}
        all_stops = stops | {i for i in (*extra_stops, pad_, rep_, sep_, p, s) if i is not None}
        all_stops.discard(-1)
        return FimTokens(spec.family, p, s, m, pad_, rep_, sep_, bos, frozenset(all_stops))
    return None
