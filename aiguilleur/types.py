"""Shapes that cross rooms (lsp/ <-> features/ <-> routing/ <-> backends/, remote/)."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Backend(StrEnum):
    """What answers a route: the embedded engine, or a server the request is sent to."""

    LOCAL = "local"
    OPENROUTER = "openrouter"
    OPENAI_COMPATIBLE = "openai-compatible"
    # llama.cpp's server, driven natively (token prompts, its cache and slots).
    LLAMA_SERVER = "llama-server"

    @property
    def shared_server(self) -> bool:
        """A server the user's team runs: it takes their own key, never an OpenRouter
        one, and costs nothing per request."""
        return self in (Backend.OPENAI_COMPATIBLE, Backend.LLAMA_SERVER)

    @property
    def remote(self) -> bool:
        """The request leaves the machine."""
        return self is not Backend.LOCAL


class RequestKind(StrEnum):
    COMPLETION = "completion"
    CODE_ACTION = "code_action"
    CHAT = "chat"


class ContextChunk(msgspec.Struct, frozen=True):
    """A piece of another file, placed before the cursor context as a stable prefix."""

    path: str
    text: str


class FimContext(msgspec.Struct, frozen=True):
    """Text around the cursor, cut at line boundaries; the backend trims it in tokens."""

    path: str
    prefix: str
    suffix: str
    # Absolute line number of the first line of `prefix`: lets the backend keep the
    # window start stable while the user types, so the prompt keeps a reusable prefix.
    prefix_first_line: int = 0
    # Chunks of other files, most stable first: the repository block (what the code at
    # the cursor uses from the workspace, context/block.py), then the ring of the other
    # files opened or edited (context/ring.py).
    repository: tuple[ContextChunk, ...] = ()
    extra: tuple[ContextChunk, ...] = ()
    language: str = ""


class GenerationParams(msgspec.Struct, frozen=True):
    max_tokens: int = 64
    temperature: float = 0.0
    # Stop at the end of the current line (the cursor sits in the middle of code).
    single_line: bool = False
    time_budget_ms: int = 2000
    # Indentation (in columns) of the cursor line: a generated line indented less than
    # this ends the block the user is writing, so generation stops there.
    min_indent: int | None = None


class Request(msgspec.Struct, frozen=True):
    kind: RequestKind
    # Requests with the same key supersede each other ("latest wins"); completions use
    # one key per editor session.
    key: str
    context: FimContext
    params: GenerationParams = GenerationParams()
    # Trim windows, in tokens (the backend owns the tokenizer).
    prefix_tokens: int = 1024
    suffix_tokens: int = 128
    extra_tokens: int = 1024
    repository_tokens: int = 1024


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    # Tokens the engine actually ran through the model for this request: the rest of the
    # prompt came from the live KV cache.
    evaluated_tokens: int = 0
    reused_tokens: int = 0
    # Of the reused tokens, those that came from a stored KV state rather than the live
    # context (after a restart, or coming back to a file).
    restored_tokens: int = 0
    completion_tokens: int = 0
    # Speculative decoding (backends/speculative.py): tokens drafted from the context and
    # evaluated along with a generated one, and how many of them the model agreed with.
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    prompt_ms: float = 0.0
    restore_ms: float = 0.0  # part of prompt_ms: finding, loading and restoring a state
    generation_ms: float = 0.0
    queue_ms: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False


class StopReason(StrEnum):
    """Why a suggestion ends where it does (`aiguilleur/lastCompletion` reports the value)."""

    NONE = ""
    EOG = "eog"  # the model ended it
    BOUNDARY = "boundary"  # the end of the line or of the cursor's block
    LENGTH = "length"  # max_tokens
    TIME = "time"  # the time budget: cut after a whole word
    CONTEXT = "context"  # the model's context window is full
    AHEAD = "ahead"  # computed ahead, while the suggestion before it was shown
    TYPED_THROUGH = "typed-through"  # the rest of what was shown, as the user typed it


class Completion(msgspec.Struct, frozen=True):
    text: str
    usage: Usage
    route: str
    model: str
    stop_reason: StopReason = StopReason.NONE
    backend: Backend = Backend.LOCAL


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


class Answer(msgspec.Struct, frozen=True):
    """A model's answer to a chat-style request (code actions, chat)."""

    text: str
    route: str
    model: str
    usage: Usage
    # "length": the model ran out of tokens before its answer ended.
    finish_reason: str = ""


class Outcome(StrEnum):
    """What became of a suggestion shown (features/acceptance.py)."""

    ACCEPTED = "accepted"
    PARTIAL = "partial"
    DISMISSED = "dismissed"


class SuggestionOutcome(msgspec.Struct, frozen=True):
    ts: float  # when it was shown
    route: str
    model: str
    outcome: Outcome
    shown_chars: int
    accepted_chars: int


class Quote(msgspec.Struct, frozen=True):
    """What a paid request would cost through the route that would take it, told before
    it is sent: `label` is `~$0.0004` once the model's tokenizer and answers were learnt
    from settles, `≤ $0.0021` (the most it can cost) before."""

    route: str
    model: str
    label: str
    estimate_usd: float
    bound_usd: float

    def title(self) -> str:
        """`claude-sonnet-4 · ~$0.0004`: the model without its vendor, and the price."""
        return f"{self.model.rsplit('/', 1)[-1]} · {self.label}"


class Route(msgspec.Struct, frozen=True):
    """A route the router chose: which backend, model and key, with its parameters."""

    name: str
    backend: Backend
    model: str = ""
    key: str = ""
    base_url: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    max_price: float | None = None
    allow_data_collection: bool = False
    first_token_ms: int | None = None
    retry_s: float = 30.0
    raw_fim: bool = True


class FimTokens(msgspec.Struct, frozen=True):
    """The FIM token ids of one loaded model (-1: the model has no such token)."""

    source: str  # "gguf" (the model's own metadata) or the family name of a known template
    pre: int
    suf: int
    mid: int
    pad: int = -1
    rep: int = -1
    sep: int = -1
    bos: int = -1
    stops: frozenset[int] = frozenset()


class ModelInfo(msgspec.Struct, frozen=True):
    path: str
    name: str
    size_bytes: int
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    fim: FimTokens | None
    load_ms: float
    n_threads: int = 0  # for generation and prompt evaluation alike
