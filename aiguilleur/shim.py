"""`aiguilleur serve --daemon`: what the editor starts, relaying its stdio to the user's
daemon (daemon.py) and starting the daemon when none answers. The bytes are copied as
they are: the LSP framing is the daemon's business."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

from aiguilleur.daemon_dir import runtime_dir, socket_path

log = logging.getLogger(__name__)

START_WAIT_S = 60.0


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_unix_connection(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return None


def start_daemon(user_config: Path | None, idle_s: float | None) -> subprocess.Popen[bytes]:
    """A daemon in its own session (it outlives this editor), logging to the runtime dir."""
    cmd = [sys.executable, "-m", "aiguilleur", "daemon", "run"]
    if idle_s is not None:
        cmd += ["--idle", str(idle_s)]
    if user_config is not None:
        cmd += ["--config", str(user_config)]
    with (runtime_dir() / "daemon.log").open("ab") as log_file:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )


async def _connect_or_start(
    user_config: Path | None, idle_s: float | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = socket_path()
    connection = await _connect(path)
    if connection is not None:
        return connection
    log.info("shim.starting_daemon socket=%s", path)
    start_daemon(user_config, idle_s)
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        connection = await _connect(path)
        if connection is not None:
            return connection
    raise SystemExit(
        f"aiguilleur: the daemon did not start within {START_WAIT_S:.0f} s; see "
        f"{runtime_dir() / 'daemon.log'}, or use `aiguilleur serve --standalone`"
    )


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


async def relay(
    stdin: BinaryIO, stdout: BinaryIO, user_config: Path | None, idle_s: float | None
) -> int:
    loop = asyncio.get_running_loop()
    sock_reader, sock_writer = await _connect_or_start(user_config, idle_s)
    editor = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(editor), stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    to_editor = asyncio.StreamWriter(transport, protocol, None, loop)
    up = asyncio.create_task(_pump(editor, sock_writer))
    down = asyncio.create_task(_pump(sock_reader, to_editor))
    await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    if up.done() and not down.done():
        # The editor closed our stdin: let the daemon see the end, pass on its last words.
        with contextlib.suppress(OSError):
            sock_writer.write_eof()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(down, 5)
    for task in (up, down):
        task.cancel()
    with contextlib.suppress(OSError):
        sock_writer.close()
    log.info("shim.stopped")
    return 0


def serve_through_daemon(
    stdout: BinaryIO, user_config: Path | None = None, idle_s: float | None = None
) -> int:
    return asyncio.run(relay(sys.stdin.buffer, stdout, user_config, idle_s))
