"""An isolated user environment: config, cache and data dirs, and HOME itself, so that
the server under test never sees the developer's own models or settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiguilleur.daemon.identity import daemon_pid, identity

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
    def run_root(self) -> Path:
        """This user's runtime dir: a directory per daemon identity in it."""
        return self.root / "run" / "aiguilleur"

    def daemon_dir_for(self, **env: str) -> Path:
        """The directory of the daemon a window of this user started with `env` (on top
        of this home's) uses: its socket, lock and log."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env(**env))
        try:
            return self.run_root / identity().digest
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @property
    def run_dir(self) -> Path:
        """The directory of the daemon this user's windows use."""
        return self.daemon_dir_for()

    def daemon_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.run_root.glob("*/identity.json"))

    @property
    def daemon_log(self) -> str:
        """Every daemon's log, one after the other."""
        logs = [d / "daemon.log" for d in self.daemon_dirs()]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    @property
    def serve_log(self) -> str:
        """The log of the editors' `aiguilleur serve` (shims and standalone servers)."""
        path = self.root / "home" / ".local" / "state" / "aiguilleur" / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_daemon(self, timeout: float = 30.0) -> None:
        """Stop this user's daemons, if any run: a daemon outlives its editors."""
        for directory in self.daemon_dirs():
            if (pid := daemon_pid(directory)) is None:
                continue
            sig = signal.SIGTERM
            deadline = time.monotonic() + timeout
            while daemon_pid(directory) is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
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

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`aiguilleur ARGS` run as the user of this home, in its workspace."""
        return subprocess.run(
            [sys.executable, "-m", "aiguilleur", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.workspace,
            timeout=300,
        )

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
