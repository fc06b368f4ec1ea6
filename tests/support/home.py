"""An isolated user environment: config, cache and data dirs, and HOME itself, so that
the server under test never sees the developer's own models or settings."""

from __future__ import annotations

import os
from pathlib import Path


class TestHome:
    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("config/aiguilleur", "cache", "data", "home", "workspace"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "run").mkdir(mode=0o700, exist_ok=True)

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "aiguilleur" / "config.toml"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    def write_config(self, text: str) -> None:
        self.config_file.write_text(text, encoding="utf-8")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "HF_", "LLAMA_", "OPENROUTER"))
        }
        env.update(
            HOME=str(self.root / "home"),
            XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_CACHE_HOME=str(self.root / "cache"),
            XDG_DATA_HOME=str(self.root / "data"),
            # The daemon's socket and lock: one daemon per test home, as per user.
            XDG_RUNTIME_DIR=str(self.root / "run"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env
