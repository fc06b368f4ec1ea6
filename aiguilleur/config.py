"""Settings as msgspec Structs, and their loading from layered sources.

Precedence (later wins): built-in defaults < user file < workspace file
< editor initializationOptions < workspace/didChangeConfiguration. A workspace file the
user has not trusted only gets what trust.py allows; private globs of every layer add up.

A bad key never stops the server: the key is dropped from its layer (so the value
from the layer below, or the default, stays) and a ConfigProblem names the file, the
key and what was expected.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.cache.trust_store import TrustStore, digest
from aiguilleur.trust import Ignored, TrustState, pick_routes, restrict
from aiguilleur.types import Backend

WORKSPACE_FILE = ".aiguilleur.toml"


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
    """Threads for generation and prompt evaluation. Default: every core the process may
    run on (its CPU affinity), measured fastest; fewer leave cores to other work."""
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
    """`local`, `openrouter` (needs `key`) or `openai-compatible` (needs `base_url`)."""
    model: str = ""
    key: str = ""
    """Label of a [keys.<label>] entry (openrouter)."""
    base_url: str = ""
    """Server of an openai-compatible route (llama-server, vLLM, Ollama, LM Studio)."""
    max_tokens: int | None = None
    temperature: float | None = None
    max_price: float | None = None
    """USD a request may cost at most, for models whose price OpenRouter cannot say."""
    allow_data_collection: bool = False
    """Allow providers that may train on prompts (required for free models)."""


def _local_route() -> list[RouteConfig]:
    return [RouteConfig(name="local", backend=Backend.LOCAL)]


class RoutesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    completion: list[RouteConfig] = msgspec.field(default_factory=_local_route)
    code_action: list[RouteConfig] = msgspec.field(default_factory=_local_route)
    chat: list[RouteConfig] = msgspec.field(default_factory=_local_route)


class PrivacyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    private: list[str] = msgspec.field(default_factory=list)
    """Globs of files that never leave the machine, added to the built-in ones."""
    detect_secrets: bool = True
    """Keep a request local when its text contains something shaped like a secret."""


class PromptConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Overrides of one action's prompt (see backends/prompts.py for the placeholders)."""

    system: str | None = None
    user: str | None = None


class ActionsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tokens: int = 1024
    """Generated tokens per code action, at most."""
    context_lines: int = 20
    """Lines before and after the selection shown to the model."""


class ChatConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tokens: int = 2048
    dir: str | None = None
    """Where new chats are written. Default: <data dir>/chats."""


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


# Sections a cloned repository's .aiguilleur.toml may not set: they decide where we write.
_WORKSPACE_FORBIDDEN: set[tuple[str, ...]] = {("cache",), ("local", "models_dir")}
# Keys (their secrets, budgets and servers) come from the user file alone: editor settings
# can come from a repository too (VS Code workspace settings).
_USER_FILE_ONLY: set[tuple[str, ...]] = {("keys",)}


class ConfigProblem(msgspec.Struct, frozen=True):
    source: str
    key: str
    message: str

    def describe(self) -> str:
        where = f" key `{self.key}`" if self.key else ""
        return f"{self.source}:{where} {self.message}"


class LoadedConfig(msgspec.Struct, frozen=True):
    config: Config
    sources: tuple[str, ...]
    problems: tuple[ConfigProblem, ...]
    workspace_file: str = ""
    trust: TrustState = TrustState.NONE
    # What the workspace file asked for and did not get, for want of trust.
    ignored: tuple[Ignored, ...] = ()

    def untrusted_message(self) -> str | None:
        """What was ignored and how to allow it, for the user; None if nothing was."""
        if not self.ignored:
            return None
        changed = " changed since you trusted it, so" if self.trust is TrustState.CHANGED else ""
        lines = "\n".join(f"- {i.describe()}" for i in self.ignored)
        root = Path(self.workspace_file).parent
        return (
            f"{self.workspace_file}{changed} is not trusted: a repository can carry it, so "
            f"these settings in it were ignored:\n{lines}\n"
            f"If you trust this file as it is now: aiguilleur trust {root}"
        )


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aiguilleur" / "config.toml"


def cache_dir(config: Config) -> Path:
    if config.cache.dir:
        return Path(config.cache.dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiguilleur"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aiguilleur"


def models_dir(config: Config) -> Path:
    if config.local.models_dir:
        return Path(config.local.models_dir).expanduser()
    return data_dir() / "models"


def _deep_merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `(?P<field>[^`]+)`")


def _error_path(error: msgspec.ValidationError) -> list[str]:
    text = str(error)
    path: list[str] = []
    if m := _AT.search(text):
        path = [p for p in re.split(r"[.\[\]]", m["path"]) if p]
    if m := _UNKNOWN.search(text):
        path.append(m["field"])
    return path


def _drop(tree: dict[str, Any], path: list[str]) -> bool:
    node: Any = tree
    for key in path[:-1]:
        # Lists too (`routes.completion.0.backend`): one bad route field must not cost
        # the whole file.
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
            continue
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    if isinstance(node, dict) and path and path[-1] in node:
        del node[path[-1]]
        return True
    return False


def _strip_forbidden(
    layer: dict[str, Any],
    source: str,
    problems: list[ConfigProblem],
    forbidden: set[tuple[str, ...]] = _WORKSPACE_FORBIDDEN | _USER_FILE_ONLY,
) -> None:
    for path in sorted(forbidden):
        if _drop(layer, list(path)):
            problems.append(
                ConfigProblem(
                    source,
                    ".".join(path),
                    "may only be set in your user config "
                    f"({user_config_path()}), not in a workspace file; ignored",
                )
            )


def _valid_layer(
    base: dict[str, Any], layer: dict[str, Any], source: str, problems: list[ConfigProblem]
) -> dict[str, Any]:
    """`layer` without the keys that would not make a valid Config on top of `base`."""
    layer = copy.deepcopy(layer)
    # Each round drops one bad key; a layer cannot have more bad keys than keys.
    for _ in range(1000):
        try:
            msgspec.convert(_deep_merge(base, layer), Config)
            return layer
        except msgspec.ValidationError as error:
            path = _error_path(error)
            message = _AT.sub("", str(error))
            if _UNKNOWN.search(message):
                message = "is not a known setting (a typo?); ignored"
            elif path and path[-1] == "backend":
                known = ", ".join(b.value for b in Backend)
                message = f"{message} (one of {known}); this route is local"
            else:
                message = f"{message}; using the default"
            problems.append(ConfigProblem(source, ".".join(path), message))
            if not _drop(layer, path):
                problems.append(ConfigProblem(source, "", "ignored as a whole"))
                return {}
    return {}


def _private_globs(layer: dict[str, Any]) -> list[str]:
    privacy = layer.get("privacy")
    globs = privacy.get("private") if isinstance(privacy, dict) else None
    return [str(g) for g in globs] if isinstance(globs, list) else []


def _parse_toml(content: bytes, path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    try:
        return tomllib.loads(content.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        problems.append(ConfigProblem(str(path), "", f"cannot be read ({error}); ignored"))
        return {}


def _read_bytes(path: Path, problems: list[ConfigProblem]) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        problems.append(ConfigProblem(str(path), "", f"cannot be read ({error}); ignored"))
        return None


def trust_store() -> TrustStore:
    return TrustStore(data_dir() / "trusted.json")


class ConfigLayers:
    """The raw layers, kept so a later layer (didChangeConfiguration) can be re-merged."""

    def __init__(
        self,
        workspace_root: Path | None = None,
        user_file: Path | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        self.workspace_root = workspace_root
        self.user_file = user_file or user_config_path()
        self.trust = trust or trust_store()
        self.init_options: dict[str, Any] = {}
        self.client_settings: dict[str, Any] = {}

    @property
    def workspace_file(self) -> Path | None:
        return None if self.workspace_root is None else self.workspace_root / WORKSPACE_FILE

    def watched_files(self) -> list[Path]:
        """The files whose change changes the settings."""
        ws = self.workspace_file
        return [self.user_file, *([ws] if ws else []), self.trust.path]

    def load(self) -> LoadedConfig:
        problems: list[ConfigProblem] = []
        sources: list[str] = []
        merged: dict[str, Any] = {}
        # Private globs only add up: no layer removes one that another added.
        private: list[str] = []

        def apply(layer: dict[str, Any], source: str) -> None:
            nonlocal merged
            sources.append(source)
            private.extend(_private_globs(layer))
            merged = _deep_merge(merged, layer)

        user = _read_bytes(self.user_file, problems)
        if user is not None:
            layer = _parse_toml(user, self.user_file, problems)
            apply(_valid_layer(merged, layer, str(self.user_file), problems), str(self.user_file))
        state = TrustState.NONE
        ignored: tuple[Ignored, ...] = ()
        ws_path = self.workspace_file
        content = _read_bytes(ws_path, problems) if ws_path is not None else None
        if ws_path is not None and content is not None:
            # The bytes hashed for trust are the bytes parsed: no window between the two.
            state = self._trust_state(ws_path, content)
            layer = _parse_toml(content, ws_path, problems)
            _strip_forbidden(layer, str(ws_path), problems)
            layer = _valid_layer(merged, layer, str(ws_path), problems)
            below = msgspec.convert(merged, Config)
            layer = pick_routes(layer, below)
            if state is not TrustState.TRUSTED:
                layer, dropped = restrict(layer, below)
                ignored = tuple(dropped)
            apply(layer, str(ws_path))
        for name, layer in (
            ("initializationOptions", self.init_options),
            ("workspace/didChangeConfiguration", self.client_settings),
        ):
            if layer:
                layer = copy.deepcopy(layer)
                _strip_forbidden(layer, name, problems, _USER_FILE_ONLY)
                apply(_valid_layer(merged, layer, name, problems), name)
        if private:
            privacy = merged.get("privacy", {})
            merged["privacy"] = {**privacy, "private": list(dict.fromkeys(private))}
        return LoadedConfig(
            msgspec.convert(merged, Config),
            tuple(sources),
            tuple(problems),
            str(ws_path) if content is not None else "",
            state,
            ignored,
        )

    def _trust_state(self, path: Path, content: bytes) -> TrustState:
        entry = self.trust.lookup(path)
        if entry is None:
            return TrustState.UNTRUSTED
        return TrustState.TRUSTED if entry.sha256 == digest(content) else TrustState.CHANGED


def as_settings(value: object) -> dict[str, Any]:
    """Editor settings arrive as JSON of any shape; keep only a table of tables."""
    if isinstance(value, dict):
        inner = value.get("aiguilleur", value)
        if isinstance(inner, dict):
            return {str(k): v for k, v in inner.items()}
    return {}
