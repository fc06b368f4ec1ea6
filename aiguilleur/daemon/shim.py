"""`aiguilleur serve`: what the editor starts. It relays the editor's stdio to its daemon
(daemon.py): the one of its identity (identity.py: the same aiguilleur, homes and key
variables), starting it when none answers, and keeps what a new daemon would need to
carry on (record.py's `SessionRecord`).

If the daemon dies, the shim answers what the daemon owed (an error for each request in
flight, the end of each progress bar), says so once, starts a new daemon and replays
`initialize`, `initialized`, the editor's settings and its open documents; the new
daemon restores its KV states from disk. When the daemon was stopped on purpose
(`aiguilleur daemon stop`), the new one starts with the editor's next message instead,
so that a stop frees the memory until the user types again.

The frames are forwarded as they came: the shim reads them only to keep that record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from aiguilleur.daemon.identity import (
    DAEMON_STOPPING,
    daemon_dir,
    identity,
    log_path,
    package_dir,
    socket_path,
)
from aiguilleur.daemon.record import Envelope, SessionRecord, frame, read_frame
from aiguilleur.logs import keep_small
from aiguilleur.tasks import TaskSet

log = logging.getLogger(__name__)

START_WAIT_S = 60.0
# A daemon that dies this soon after starting, this many times in a row, is not worth
# starting again: the user is told where its log is and how to run without it.
CRASH_WINDOW_S = 20.0
MAX_QUICK_CRASHES = 3
REQUEST_FAILED = -32803  # LSP's RequestFailed: the request was valid, the server failed


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_unix_connection(path, limit=2**20)
    except (FileNotFoundError, ConnectionRefusedError):
        return None


def start_daemon(
    directory: Path, user_config: Path | None, idle_s: float | None, verbose: int = 0
) -> subprocess.Popen[bytes]:
    """The daemon of `directory` in its own session (it outlives this editor); what it
    writes on stderr (a crash's last words too) goes to its log."""
    # -P: the aiguilleur of this Python's environment, never one that happens to be in
    # the editor's working directory (a checkout of aiguilleur itself, say); unless this
    # very `serve` runs from there (a checkout run without installing it).
    from_cwd = package_dir().parent == Path.cwd().resolve()
    cmd = [sys.executable, *([] if from_cwd else ["-P"]), "-m", "aiguilleur", "daemon", "run"]
    cmd += ["--dir", str(directory)]
    cmd += ["-v"] * verbose
    if idle_s is not None:
        cmd += ["--idle", str(idle_s)]
    if user_config is not None:
        cmd += ["--config", str(user_config)]
    log = log_path(directory)
    keep_small(log)
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    # Reaped as soon as it ends: a daemon killed while this editor lives on would stay a
    # zombie otherwise, and the ledger would take its unsettled reservations for live.
    threading.Thread(target=process.wait, name="daemon-reaper", daemon=True).start()
    return process


class DaemonDidNotStart(Exception):
    pass


async def connect_or_start(
    directory: Path, user_config: Path | None, idle_s: float | None, verbose: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = socket_path(directory)
    connection = await _connect(path)
    if connection is not None:
        return connection
    log.info("shim.starting_daemon socket=%s", path)
    start_daemon(directory, user_config, idle_s, verbose)
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        connection = await _connect(path)
        if connection is not None:
            return connection
    raise DaemonDidNotStart(
        f"the daemon did not start within {START_WAIT_S:.0f} s; see "
        f"{log_path(directory)}, or use `aiguilleur serve --standalone`"
    )


class Relay:
    """One editor's connection to the daemon, across daemon restarts."""

    def __init__(
        self,
        editor_in: asyncio.StreamReader,
        editor_out: asyncio.StreamWriter,
        user_config: Path | None,
        idle_s: float | None,
        verbose: int = 0,
    ) -> None:
        self.verbose = verbose
        # This window's daemon: decided once, when the editor starts it.
        self.directory = daemon_dir(identity(user_config))
        self.daemon_log = log_path(self.directory)
        self.editor_in = editor_in
        self.editor_out = editor_out
        self.user_config = user_config
        self.idle_s = idle_s
        self.record = SessionRecord()
        self.writer: asyncio.StreamWriter | None = None
        self.linked = asyncio.Event()  # set while frames may go to the daemon
        self.dormant = False  # stopped on purpose: restart with the editor's next message
        self.given_up = False
        self.exiting = False
        self._tasks = TaskSet()
        self._recovery: asyncio.Task[None] | None = None
        self._down: asyncio.Task[None] | None = None
        self._replay_answer: asyncio.Future[Envelope] | None = None
        self._linked_at = 0.0
        self._quick_crashes = 0
        self.restarts = 0

    # -- towards the editor ---------------------------------------------------------------

    def to_editor(self, message: dict[str, Any]) -> None:
        if not self.editor_out.is_closing():
            self.editor_out.write(frame(msgspec.json.encode({"jsonrpc": "2.0", **message})))

    def tell(self, text: str) -> None:
        params = {"type": 2, "message": f"aiguilleur: {text}"}  # 2: a warning
        self.to_editor({"method": "window/showMessage", "params": params})

    # -- the daemon's side ----------------------------------------------------------------

    async def _link(self) -> None:
        reader, writer = await connect_or_start(
            self.directory, self.user_config, self.idle_s, self.verbose
        )
        self.writer = writer
        self._linked_at = time.monotonic()
        self._down = self._tasks.spawn(self._from_daemon(reader), "from the daemon")

    async def _from_daemon(self, reader: asyncio.StreamReader) -> None:
        stopping = False
        try:
            while (got := await read_frame(reader)) is not None:
                raw, message = got
                if message is not None:
                    if message.method == DAEMON_STOPPING:
                        stopping = True
                        continue
                    waiting = self._replay_answer
                    if (
                        waiting is not None
                        and message.method is None
                        and message.id == self.record.replay_id
                    ):
                        if not waiting.done():
                            waiting.set_result(message)
                        continue
                    self.record.note_from_daemon(message)
                self.editor_out.write(raw)
                await self.editor_out.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
            log.info("shim.daemon_cut error=%s", type(error).__name__)
        if self.exiting:
            return
        self.lost(deliberate=stopping)

    def lost(self, deliberate: bool) -> None:
        """The daemon is gone: answer what it owed, and start over (once at a time)."""
        self.linked.clear()
        waiting = self._replay_answer
        if waiting is not None and not waiting.done():
            waiting.set_exception(ConnectionError("the new daemon went away while replaying"))
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for message in self.record.owed_by_daemon():
            self.to_editor(message)
        if self._recovery is not None and not self._recovery.done():
            return  # the restart under way sees its own failure
        if self.record.shutdown_asked:
            return  # the editor is leaving anyway: nothing to restart for
        if deliberate:
            log.info("shim.daemon_stopped")
            self.tell("the daemon was stopped; a new one starts with your next edit.")
            self.dormant = True
            return
        quick = time.monotonic() - self._linked_at < CRASH_WINDOW_S
        self._quick_crashes = self._quick_crashes + 1 if quick else 1
        if self._quick_crashes >= MAX_QUICK_CRASHES:
            self.give_up(
                f"the daemon stopped {self._quick_crashes} times in a row; see "
                f"{self.daemon_log}. `aiguilleur serve --standalone` runs "
                "without it."
            )
            return
        log.warning("shim.daemon_lost restarting=true")
        self.tell(
            "the daemon stopped unexpectedly; starting a new one (your open files are "
            f"carried over). Its log: {self.daemon_log}"
        )
        self._recovery = self._tasks.spawn(self._restart(), "restart the daemon")

    def give_up(self, text: str) -> None:
        log.warning("shim.gave_up %s", text)
        self.given_up = True
        self.linked.set()  # whatever waits for the daemon is answered by the shim now
        self.tell(text)

    async def _restart(self) -> None:
        for attempt in range(1, MAX_QUICK_CRASHES + 1):
            self.restarts += 1
            try:
                await self._link()
                await self._replay()
            except (DaemonDidNotStart, ConnectionError, OSError, TimeoutError) as error:
                log.warning("shim.restart_failed attempt=%d error=%s", attempt, error)
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None
                self.record.owed_by_daemon()  # nothing was asked of that one yet
                if isinstance(error, DaemonDidNotStart) or attempt == MAX_QUICK_CRASHES:
                    self.give_up(f"could not restart the daemon ({error}).")
                    return
                continue
            log.info("shim.reconnected restarts=%d", self.restarts)
            self.linked.set()
            return

    async def _replay(self) -> None:
        """The new daemon learns this editor as the old one knew it, before anything new."""
        assert self.writer is not None
        init = self.record.initialize_for_replay()
        if init is None:
            return  # the editor had not initialized yet: its own initialize comes next
        loop = asyncio.get_running_loop()
        self._replay_answer = loop.create_future()
        self.writer.write(init)
        try:
            answer = await asyncio.wait_for(self._replay_answer, START_WAIT_S)
        finally:
            self._replay_answer = None
        self.record.note_capabilities(answer)
        for raw in self.record.state_frames():
            self.writer.write(raw)
        await self.writer.drain()

    # -- the editor's side ----------------------------------------------------------------

    async def run(self) -> int:
        try:
            await self._link()
        except DaemonDidNotStart as error:
            raise SystemExit(f"aiguilleur: {error}") from None
        self.linked.set()
        while True:
            try:
                got = await read_frame(self.editor_in)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                got = None
            if got is None:
                break  # the editor closed our stdin
            raw, message = got
            if message is not None and message.method == "exit":
                self.exiting = True
            if self.given_up:
                self._refuse(message)
                if self.exiting:
                    break
                continue
            if self.dormant and message is not None and message.method == "shutdown":
                # The editor is leaving: no daemon to start for that.
                self.record.shutdown_asked = True
                self._refuse(message)
                continue
            if self.dormant and message is not None and message.method is None:
                # The editor's answer to a request of the stopped daemon (a progress bar
                # it asked for): nobody waits for it, and it is not the user's next edit.
                continue
            if self.dormant and not self.exiting and not self.record.shutdown_asked:
                self.dormant = False
                self._quick_crashes = 0
                self._recovery = self._tasks.spawn(self._restart(), "restart the daemon")
            if not self.linked.is_set() and self.exiting:
                break  # nothing to tell a daemon that is not there
            await self.linked.wait()
            if self.given_up:
                self._refuse(message)
                continue
            if not self.record.note_from_editor(raw, message):
                continue  # an answer to a request of the daemon that is gone
            await self._fold_if_long()
            try:
                assert self.writer is not None
                self.writer.write(raw)
                await self.writer.drain()
            except (ConnectionError, OSError, AssertionError):
                pass  # the daemon's side sees the cut too; what was owed gets answered
            if self.exiting:
                break  # the daemon closes the connection; _finish passes on its last words
        await self._finish()
        return 0

    def _refuse(self, message: Envelope | None) -> None:
        if message is None or message.method is None or message.id is None:
            return
        if message.method == "shutdown":
            self.to_editor({"id": message.id, "result": None})
            return
        self.to_editor(
            {
                "id": message.id,
                "error": {
                    "code": REQUEST_FAILED,
                    "message": f"aiguilleur: the daemon is not running (see {self.daemon_log})",
                },
            }
        )

    async def _fold_if_long(self) -> None:
        folding = self.record.fold_due()
        if folding is not None:
            # In a thread: the first fold imports pygls (a few hundred ms).
            try:
                await asyncio.to_thread(folding.run)
            except Exception as error:  # a change pygls cannot apply: replay it as it came
                log.warning("shim.fold_failed error=%s", type(error).__name__)
                self.record.fold_failed(folding)
                return
            self.record.folded(folding)

    async def _finish(self) -> None:
        self.exiting = True
        if self.writer is not None and self._down is not None and not self._down.done():
            # Let the daemon see the end, and pass on its last words.
            with contextlib.suppress(OSError):
                self.writer.write_eof()
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(asyncio.shield(self._down), 5)
        for task in (self._down, self._recovery):
            if task is not None:
                task.cancel()
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.editor_out.drain()
        log.info("shim.stopped restarts=%d", self.restarts)


async def relay(
    stdin: BinaryIO,
    stdout: BinaryIO,
    user_config: Path | None,
    idle_s: float | None,
    verbose: int = 0,
) -> int:
    loop = asyncio.get_running_loop()
    editor = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(editor), stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    to_editor = asyncio.StreamWriter(transport, protocol, None, loop)
    return await Relay(editor, to_editor, user_config, idle_s, verbose).run()


def serve_through_daemon(
    stdout: BinaryIO,
    user_config: Path | None = None,
    idle_s: float | None = None,
    verbose: int = 0,
) -> int:
    return asyncio.run(relay(sys.stdin.buffer, stdout, user_config, idle_s, verbose))
