"""What the benches share."""

from __future__ import annotations

import os
from pathlib import Path


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment with config, cache and data dirs under `home`: no user config,
    model or KV state leaks into a measurement."""
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(home / "c"),
        XDG_CACHE_HOME=str(home / "k"),
        XDG_DATA_HOME=str(home / "d"),
        **extra,
    )
    return env
