"""The settings, as msgspec Structs: what each key means and its default. Loading and
merging them from their layers is loading.py's; what a workspace may change, trust.py's."""

from __future__ import annotations

import msgspec

from aiguilleur.types import Backend


class LocalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str | None = None
    """Path to a GGUF file, or an alias known to `aiguilleur pull`."""
    models_dir: str | None = None
    """Where `aiguilleur pull` stores models; searched first. Default: <data dir>/models."""
    search_common_places: bool = True
    """Also look in the llama.cpp cache, LM Studio's models and the Hugging Face cache."""
    n_ctx: int = 4096
    n_batch: int = 128
    """Prompt tokens evaluated per slice: cancellation is checked between slices."""
    n_threads: int | None = None
    """Threads for generation and prompt evaluation. Default: the cores the process may
    run on (its CPU affinity) that other programs leave it, measured as it works."""
    adapt_to_load: bool = True
    """Follow the machine's load: fewer threads while other programs keep the cores busy
    (llama.cpp's threads spin while they wait for each other), and prefill and prefetch
    paused meanwhile. Off: `n_threads` or every core, and background work, always."""
    reuse_prefix: bool = True
    """Evaluate only the tokens after the first change. Off only to measure its worth."""
    speculative: bool = False
    """Greedy suggestions check tokens drafted from the context in one batch. Off by
    default: batched evaluation rounds differently, so at a near-tie the suggestion can
    differ from plain decoding (1 of 17 real-weight prompts), for 1.13x at best here."""


class CompletionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prefix_tokens: int = 1024
    suffix_tokens: int = 128
    max_tokens: int = 64
    extra_tokens: int = 1024
    """Budget for chunks of other open and recently edited files."""
    extra_chunks: int = 8
    """Size of the ring of chunks from other files."""
    extra_chunk_lines: int = 64
    repository_tokens: int = 1024
    """Budget for the repository block: what the code at the cursor uses from other files
    of the workspace (signatures, members, first docstring lines), from its index. 0: none.
    It stays on this machine: a remote route gets the cursor's file only."""
    time_budget_ms: int = 1500
    """Generation stops after this long, whatever it has by then."""
    temperature: float = 0.0
    prefetch: bool = True
    """While a local suggestion is shown and the engine is idle, compute the one that
    follows its acceptance (it gives way to any request)."""


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dir: str | None = None
    """Default: $XDG_CACHE_HOME/aiguilleur (~/.cache/aiguilleur)."""
    kv_ram_mb: int = 512
    """KV states kept in memory for the documents being edited (0: none)."""
    kv_disk_mb: int = 4096
    """KV states kept on disk for restarts, least recently used evicted (0: none)."""
    responses_mb: int = 256
    """Answers of remote models kept on disk (0: no response cache)."""
    responses_ttl_hours: float = 24.0
    responses_any_temperature: bool = False
    """Also cache answers sampled at a temperature above 0 (they would differ anew)."""


OPENROUTER_URL = "https://openrouter.ai/api/v1"


class KeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An OpenRouter API key: where its secret lives and what it may spend (USD)."""

    env: str | None = None
    """Environment variable holding the key."""
    file: str | None = None
    """File holding the key (its first line)."""
    base_url: str = OPENROUTER_URL
    daily: float | None = None
    weekly: float | None = None
    monthly: float | None = None
    total: float | None = None


class RouteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One way to answer a request; a feature's routes are tried in order."""

    name: str
    backend: Backend = Backend.LOCAL
    """`local`, `openrouter` (needs `key`), `llama-server` or `openai-compatible` (both
    need `base_url`)."""
    model: str = ""
    """The model's id (openrouter, openai-compatible); a llama-server serves one model,
    which it names itself."""
    key: str = ""
    """Label of a [keys.<label>] entry: the OpenRouter key (openrouter), or the key a
    shared server was started with (llama-server, openai-compatible: sent as
    `Authorization: Bearer`). One key serves one kind: an OpenRouter key is never sent
    to a shared server."""
    base_url: str = ""
    """The server of a llama-server route (its root: `http://gpu.lan:8080`) or of an
    openai-compatible route (its `/v1`: vLLM, Ollama, LM Studio)."""
    max_tokens: int | None = None
    temperature: float | None = None
    max_price: float | None = None
    """USD a request may cost at most, for models whose price OpenRouter cannot say."""
    allow_data_collection: bool = False
    """Allow providers that may train on prompts (required for free models)."""
    first_token_ms: int | None = None
    """A shared server (llama-server, openai-compatible) that sends nothing for this
    long is passed over: the next route answers, and the server rests for a while.
    Default: the completion's `time_budget_ms` for completions, 30 s for the rest."""
    retry_s: float = 30.0
    """How long a shared server that failed or was too slow is passed over."""
    raw_fim: bool = True
    """Completions through `/completions` with the model's own FIM sentinels, when its
    family's are known (Qwen2.5-Coder, DeepSeek-Coder, Codestral); otherwise, or when
    false, a chat prompt whose answer is fitted to the cursor. False for a server that
    wraps every prompt in a template (Ollama)."""


def _local_route() -> list[RouteConfig]:
    return [RouteConfig(name="local", backend=Backend.LOCAL)]


class RoutesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    completion: list[RouteConfig] = msgspec.field(default_factory=_local_route)
    code_action: list[RouteConfig] = msgspec.field(default_factory=_local_route)
    chat: list[RouteConfig] = msgspec.field(default_factory=_local_route)

    def every(self) -> tuple[RouteConfig, ...]:
        """Every feature's routes, in one list."""
        return (*self.completion, *self.code_action, *self.chat)


class PrivacyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    private: list[str] = msgspec.field(default_factory=list)
    """Globs of files that never leave the machine, added to the built-in ones."""
    detect_secrets: bool = True
    """Keep a request local when its text contains something shaped like a secret."""


class PromptConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Overrides of one action's prompt (see features/prompts.py for the placeholders)."""

    system: str | None = None
    user: str | None = None


class ActionsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tokens: int = 1024
    """Generated tokens per code action, at most."""
    context_lines: int = 20
    """Lines before and after the selection shown to the model."""
    repository_tokens: int = 512
    """Budget for the definitions of other files the selection uses (0: none). A remote
    route receives them too (never from a private file)."""


class ChatConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tokens: int = 2048
    dir: str | None = None
    """Where new chats are written. Default: <data dir>/chats."""
    repository_tokens: int = 512
    """Budget for the definitions of other files the chat's code uses or its question
    names (0: none), listed in the answer's heading. A remote route receives them too
    (never from a private file)."""


class IndexConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Index the workspace's definitions in the background (nothing leaves the machine)."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    local: LocalConfig = LocalConfig()
    completion: CompletionConfig = CompletionConfig()
    cache: CacheConfig = CacheConfig()
    keys: dict[str, KeyConfig] = msgspec.field(default_factory=dict)
    routes: RoutesConfig = RoutesConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    actions: ActionsConfig = ActionsConfig()
    chat: ChatConfig = ChatConfig()
    prompts: dict[str, PromptConfig] = msgspec.field(default_factory=dict)
    index: IndexConfig = IndexConfig()
