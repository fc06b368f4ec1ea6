"""`aiguilleur daemon status|stop`: ask the running daemon how it is, or stop it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

from aiguilleur.daemon_dir import daemon_pid, socket_path

STATUS_METHOD = "aiguilleur/daemon"  # daemon.DAEMON_STATUS, without importing the engine


async def _ask(method: str) -> Any:
    """One request over the daemon's socket, as a (minimal) LSP client."""
    reader, writer = await asyncio.open_unix_connection(socket_path())

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


def daemon_status() -> int:
    pid = daemon_pid()
    if pid is None:
        print("aiguilleur daemon: not running (the next `aiguilleur serve` starts it)")
        return 1
    try:
        status = asyncio.run(asyncio.wait_for(_ask(STATUS_METHOD), 30))
    except (OSError, TimeoutError, ValueError) as error:
        print(f"aiguilleur daemon: pid {pid} holds the lock but does not answer ({error})")
        return 1
    model = status.get("model") or f"none ({status.get('model_problem')})"
    print(f"aiguilleur daemon: pid {status['pid']}, up {status['uptime_s']:.0f} s")
    # The connection asking counts as a session: the editors' are the others.
    print(f"  editor sessions: {max(0, int(status['sessions']) - 1)}")
    print(f"  model: {model}")
    print(f"  memory (RSS): {status['rss_mb']:.0f} MB")
    print(f"  socket: {socket_path()}")
    return 0


def daemon_stop(timeout: float = 30.0) -> int:
    pid = daemon_pid()
    if pid is None:
        print("aiguilleur daemon: not running")
        return 0
    os.kill(pid, signal.SIGTERM)  # it saves its KV states, then leaves
    deadline = time.monotonic() + timeout
    while daemon_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if daemon_pid() is not None:
        print(f"aiguilleur daemon: pid {pid} did not stop within {timeout:.0f} s")
        return 1
    print(f"aiguilleur daemon: stopped (pid {pid})")
    return 0
