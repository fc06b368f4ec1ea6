"""`aiguilleur daemon status|stop`: how each of the user's daemons is, or stop them.

A user has one daemon per identity (daemon/identity.py): per installed aiguilleur, per set of
homes, per set of key values. `status` lists them all and marks the one this environment's
windows use; `stop` stops that one (or, with --all, every one)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from aiguilleur.daemon.identity import (
    all_daemon_dirs,
    daemon_dir,
    daemon_pid,
    identity,
    log_path,
    read_identity,
    socket_path,
)

STATUS_METHOD = "aiguilleur/daemon"  # daemon.DAEMON_STATUS, without importing the engine


async def _ask(directory: Path, method: str) -> Any:
    """One request over a daemon's socket, as a (minimal) LSP client."""
    reader, writer = await asyncio.open_unix_connection(socket_path(directory))

    def send(message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def answer(msg_id: int) -> Any:
        while True:
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            message = json.loads(await reader.readexactly(length))
            if message.get("id") == msg_id and "method" not in message:
                return message.get("result")

    send({"id": 1, "method": "initialize", "params": {"capabilities": {}}})
    await answer(1)
    send({"method": "initialized", "params": {}})
    send({"id": 2, "method": method, "params": {}})
    result = await answer(2)
    send({"id": 3, "method": "shutdown"})
    await answer(3)
    send({"method": "exit"})
    writer.close()
    return result


def _describe(directory: Path, pid: int, mine: bool) -> None:
    ident = read_identity(directory)
    print(f"aiguilleur daemon {directory.name}{'  (this environment uses it)' if mine else ''}")
    if ident is not None:
        install = ident.installation
        print(f"  aiguilleur {install.version} from {install.package} ({install.python})")
        print(f"  config: {ident.user_config}")
        print(f"  cache: {ident.cache_home}  data: {ident.data_home}")
        keys = ", ".join(ident.key_variables) or "none"
        print(f"  key variables: {keys} (their values are compared, never stored)")
    try:
        status = asyncio.run(asyncio.wait_for(_ask(directory, STATUS_METHOD), 30))
    except (OSError, TimeoutError, ValueError) as error:
        print(f"  pid {pid} holds its lock but does not answer ({error})")
        return
    model = status.get("model") or f"none ({status.get('model_problem')})"
    print(f"  pid {status['pid']}, up {status['uptime_s']:.0f} s")
    # The connection asking counts as a session: the editors' are the others.
    print(f"  editor sessions: {max(0, int(status['sessions']) - 1)}")
    print(f"  model: {model}")
    print(f"  memory (RSS): {status['rss_mb']:.0f} MB")
    if status.get("superseded"):
        print(
            f"  superseded by aiguilleur {status['superseded']} on disk: it leaves when its "
            "last window closes"
        )
    print(f"  socket: {socket_path(directory)}")
    print(f"  log: {log_path(directory)}")


def daemon_status(user_config: Path | None = None) -> int:
    mine = daemon_dir(identity(user_config))
    running = [(d, pid) for d in all_daemon_dirs() if (pid := daemon_pid(d)) is not None]
    if not running:
        print("aiguilleur daemon: none running (the next `aiguilleur serve` starts one)")
        return 1
    for directory, pid in running:
        _describe(directory, pid, directory == mine)
    if all(d != mine for d, _ in running):
        print("(none of them is this environment's: its next `aiguilleur serve` starts one)")
    return 0


def _stop(directory: Path, pid: int, timeout: float) -> bool:
    os.kill(pid, signal.SIGTERM)  # it saves its KV states, then leaves
    deadline = time.monotonic() + timeout
    while daemon_pid(directory) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if daemon_pid(directory) is not None:
        print(f"aiguilleur daemon {directory.name}: pid {pid} did not stop within {timeout:.0f} s")
        return False
    print(f"aiguilleur daemon {directory.name}: stopped (pid {pid})")
    return True


def daemon_stop(user_config: Path | None = None, every: bool = False, timeout: float = 30) -> int:
    dirs = all_daemon_dirs() if every else [daemon_dir(identity(user_config))]
    running = [(d, pid) for d in dirs if (pid := daemon_pid(d)) is not None]
    if not running:
        others = sum(daemon_pid(d) is not None for d in all_daemon_dirs())
        more = (
            f"; {others} other daemon(s) of yours run (`aiguilleur daemon status`, "
            "`aiguilleur daemon stop --all`)"
            if others
            else ""
        )
        print(f"aiguilleur daemon: not running{more}")
        return 0
    stopped = [_stop(d, pid, timeout) for d, pid in running]
    return 0 if all(stopped) else 1
