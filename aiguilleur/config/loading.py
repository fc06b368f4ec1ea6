"""Settings (settings.py's Structs) loaded from layered sources.

Precedence (later wins): built-in defaults < user file < workspace file
< editor initializationOptions < workspace/didChangeConfiguration. A workspace file the
user has not trusted only gets what trust.py allows; private globs of every layer add up.

A bad key never stops the server: the key is dropped from its layer (so the value
from the layer below, or the default, stays) and a ConfigProblem names the file, the
key and what was expected.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.config.homes import cache_home, data_dir, user_config_path
from aiguilleur.config.settings import Config
from aiguilleur.config.trust import Ignored, TrustState, pick_routes, restrict
from aiguilleur.config.trust_store import TrustStore, digest
from aiguilleur.types import Backend

WORKSPACE_FILE = ".aiguilleur.toml"


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


def cache_dir(config: Config) -> Path:
    if config.cache.dir:
        return Path(config.cache.dir).expanduser()
    return cache_home()


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
