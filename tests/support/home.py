"""An isolated user environment: config, cache and data dirs, and HOME itself, so that
the server under test never sees the developer's own models or settings."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from aiguilleur.daemon_dir import daemon_pid

# How `aiguilleur serve` runs: relayed to the user's daemon (the default), or alone.
SERVER_MODES = ("daemon", "standalone")


class TestHome:
    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, root: Path, mode: str = "daemon") -> None:
        assert mode in SERVER_MODES, mode
        self.root = root
        self.mode = mode
        for d in ("config/aiguilleur", "cache", "data", "home", "workspace"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "run").mkdir(mode=0o700, exist_ok=True)

    @property
    def serve_args(self) -> list[str]:
        return ["--standalone"] if self.mode == "standalone" else []

    @property
    def run_dir(self) -> Path:
        """Where this user's daemon keeps its socket, lock and log."""
        return self.root / "run" / "aiguilleur"

    @property
    def daemon_log(self) -> str:
        path = self.run_dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_daemon(self, timeout: float = 30.0) -> None:
        """Stop this user's daemon, if one runs: the daemon outlives its editors."""
        if not self.run_dir.exists() or (pid := daemon_pid(self.run_dir)) is None:
            return
        sig = signal.SIGTERM
        deadline = time.monotonic() + timeout
        while daemon_pid(self.run_dir) is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            time.sleep(0.1)

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
