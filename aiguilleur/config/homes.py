"""The user's homes, as the XDG base directories put them: where the user file, the caches,
the data (ledger, models) and the logs live. Free of imports: the shim an editor starts
needs them to know which daemon is its own."""

from __future__ import annotations

import os
from pathlib import Path


def _home(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or str(Path.home() / default))


def user_config_path() -> Path:
    return _home("XDG_CONFIG_HOME", ".config") / "aiguilleur" / "config.toml"


def cache_home() -> Path:
    """The cache home (a user file's `[cache] dir` may put the caches elsewhere)."""
    return _home("XDG_CACHE_HOME", ".cache") / "aiguilleur"


def data_dir() -> Path:
    return _home("XDG_DATA_HOME", ".local/share") / "aiguilleur"


def log_dir() -> Path:
    """The logs of `aiguilleur serve` (the daemons keep theirs beside their sockets)."""
    return _home("XDG_STATE_HOME", ".local/state") / "aiguilleur"
