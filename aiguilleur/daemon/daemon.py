"""One daemon per user, for every editor window: one runtime (model, KV store, response
cache, ledger, remote clients) built from the user file alone, and one LSP server per
connection on a Unix socket, each with its own session (workspace, trust, policy).

pygls serves one client per process (its `start_io` and `start_tcp` end the process at
`exit`): connections are accepted here and each runs pygls' message loop
(`pygls.io_.run_async`) over the connection's streams, with an `exit` that ends that
connection only.

One daemon per identity (identity.py): it holds an exclusive lock on `daemon.lock` in
its directory for its lifetime, so a second one started by a race exits at once in favour
of the first.

When the aiguilleur it runs changes on disk (an upgrade), it stops taking windows (new
ones start a daemon of the new code), tells each of its windows once, finishes what they
ask until they close, and leaves as at any stop: states, reservations and caches written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec

from aiguilleur.config.loading import ConfigLayers
from aiguilleur.daemon.identity import (
    DAEMON_STOPPING,
    DaemonIdentity,
    Installation,
    daemon_lock,
    installation,
    prune_stale,
    read_identity,
    socket_path,
)
from aiguilleur.lsp.protocol import ConnectionProtocol, serve_connection
from aiguilleur.lsp.server import build_server
from aiguilleur.lsp.session import Session
from aiguilleur.routing.runtime import Runtime
from aiguilleur.types import ModelInfo

log = logging.getLogger(__name__)

DAEMON_STATUS = "aiguilleur/daemon"
DEFAULT_IDLE_S = 600.0
UPGRADE_CHECK_S = 5.0  # how often the daemon looks whether its code changed on disk


class DaemonStatus(msgspec.Struct, frozen=True):
    pid: int
    sessions: int
    model: str | None
    model_problem: str | None
    rss_mb: float
    uptime_s: float
    identity: DaemonIdentity | None = None
    running: Installation | None = None  # what this process runs (its identity's at start)
    superseded: str | None = None  # what replaced it on disk; it leaves with its last window


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Daemon:
    def __init__(
        self,
        directory: Path,
        user_config: Path | None = None,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        self.directory = directory
        self.identity = read_identity(directory)
        self.running = installation()
        self.superseded: str | None = None
        self.user_config = user_config
        self.idle_s = idle_s
        self.sessions: dict[Session, asyncio.StreamWriter] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self.started = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        # Built from the user file alone: no workspace, no editor settings.
        config = ConfigLayers(user_file=user_config).load().config
        self.runtime = Runtime(config, self._problem_from_thread)
        self._idle_since: float | None = time.monotonic()
        self._stop = asyncio.Event()

    # -- messages to the sessions ------------------------------------------------------

    def _problem_from_thread(self, message: str) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._tell_all, message)

    def _tell_all(self, message: str) -> None:
        """A problem of the runtime concerns every window (Runtime.problems keeps it for
        the windows that connect later)."""
        for session in list(self.sessions):
            session.tell(message)

    def _loaded_from_thread(self, info: ModelInfo | None, error: str | None) -> None:
        if info is not None:
            log.info("daemon.model_loaded name=%s ms=%.0f", info.name, info.load_ms)
        elif error:
            log.warning("daemon.no_model error=%s", error)

    def status(self) -> DaemonStatus:
        info = self.runtime.model_info
        return DaemonStatus(
            pid=os.getpid(),
            sessions=len(self.sessions),
            model=info.name if info else None,
            model_problem=self.runtime.load_error,
            rss_mb=_rss_mb(),
            uptime_s=time.monotonic() - self.started,
            identity=self.identity,
            running=self.running,
            superseded=self.superseded,
        )

    # -- connections ---------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if (this := asyncio.current_task()) is not None:
            self._connections.add(this)
            this.add_done_callback(self._connections.discard)
        server, session = build_server(self.user_config, self.runtime, ConnectionProtocol)

        @server.feature(DAEMON_STATUS)
        def daemon_status(ls: Any, params: Any) -> Any:
            return msgspec.to_builtins(self.status())

        self.sessions[session] = writer
        self._idle_since = None
        log.info("daemon.session_open sessions=%d", len(self.sessions))
        try:
            await serve_connection(server, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            log.info("daemon.connection_cut error=%s", type(error).__name__)
        finally:
            session.completion.finish()
            await asyncio.to_thread(self.runtime.acceptance.flush)  # `aiguilleur usage` sees it
            self.sessions.pop(session, None)
            if not self.sessions:
                self._idle_since = time.monotonic()
                if self.superseded is not None:
                    log.info("daemon.drained")
                    self._stop.set()
            log.info("daemon.session_closed sessions=%d", len(self.sessions))

    async def _say_stopping(self) -> None:
        """Each shim learns that this stop is on purpose: it starts no new daemon until its
        editor sends something."""
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                session.server.protocol.notify(DAEMON_STOPPING, {"reason": "stopped"})
        await asyncio.sleep(0)  # the notes are queued on this loop (lsp/protocol.py)
        for writer in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2)

    async def _close_connections(self) -> None:
        """End each connection's loop before the runtime closes under it (left to
        asyncio.run, they would be cancelled mid-read, a traceback each)."""
        for writer in list(self.sessions.values()):
            writer.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)

    async def _watch_idle(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(min(1.0, max(0.05, self.idle_s / 4)))
            since = self._idle_since
            if since is not None and time.monotonic() - since >= self.idle_s:
                log.info("daemon.idle_exit idle_s=%.0f", self.idle_s)
                self._stop.set()

    async def _watch_installation(self) -> None:
        """An upgrade (or any change of the code on disk) supersedes this daemon. New
        windows do not come here then: their identity names the new code. It still
        answers `aiguilleur daemon status`."""
        package = Path(self.running.package)
        while not self._stop.is_set():
            await asyncio.sleep(UPGRADE_CHECK_S)
            now = await asyncio.to_thread(installation, package)
            if now.code == self.running.code:
                continue
            self.superseded = now.version
            log.info(
                "daemon.superseded running=%s installed=%s sessions=%d",
                self.running.version,
                now.version,
                len(self.sessions),
            )
            was = self.running.version
            if now.version != was:
                what = f"version {now.version} is installed; this window runs {was}"
            else:
                what = f"its code changed on disk; this window runs the {was} it started with"
            self.runtime.tell_every_window(
                f"{what} until its language server restarts. To switch now, restart it "
                "(Neovim: `:LspRestart`, Helix: `:lsp-restart`, VS Code: `Developer: Reload "
                "Window`); new windows get the new version already."
            )
            if not self.sessions:
                self._stop.set()
            return

    async def run(self, path: Path) -> None:
        self.loop = asyncio.get_running_loop()
        for gone in await asyncio.to_thread(prune_stale, self.directory):
            log.info("daemon.pruned directory=%s", gone)
        choice = await asyncio.to_thread(self.runtime.start, self._loaded_from_thread)
        log.info("daemon.start pid=%d socket=%s model=%s", os.getpid(), path, choice.path)
        await self.runtime.start_remote()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # ours to replace: we hold the lock, so no daemon listens there
        server = await asyncio.start_unix_server(self._serve_connection, path)
        path.chmod(0o600)
        watches = [
            asyncio.create_task(self._watch_idle()),
            asyncio.create_task(self._watch_installation()),
        ]
        try:
            await self._stop.wait()
        finally:
            for watch in watches:
                watch.cancel()
            server.close()
            await self._say_stopping()
            await self._close_connections()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            remote = self.runtime.remote
            if remote is not None:
                await remote.close()
            await asyncio.to_thread(self.runtime.close)
            log.info("daemon.stopped")

    def stop(self) -> None:
        self._stop.set()


def run_daemon(
    directory: Path, user_config: Path | None = None, idle_s: float = DEFAULT_IDLE_S
) -> int:
    with daemon_lock(directory) as mine:
        if not mine:
            log.info("daemon.already_running: exiting in favour of the running one")
            return 0
        daemon = Daemon(directory, user_config, idle_s)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, daemon.stop)
            await daemon.run(socket_path(directory))

        asyncio.run(main())
    return 0
