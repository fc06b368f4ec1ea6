"""Where the user's daemon lives: the runtime dir (private to the user) with the socket,
the lock that makes one daemon at a time, and the daemon's log. Small and free of the
engine, so that the shim an editor starts stays small."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def runtime_dir() -> Path:
    """Private to the user: the socket and the lock live here."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "aiguilleur" if base else Path(f"/tmp/aiguilleur-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user; set XDG_RUNTIME_DIR")
    return path


def socket_path() -> Path:
    return runtime_dir() / "daemon.sock"


@contextlib.contextmanager
def daemon_lock(directory: Path) -> Iterator[bool]:
    """True while this process is the one daemon; False when another holds the lock."""
    with (directory / "daemon.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield True


def daemon_pid(directory: Path | None = None) -> int | None:
    """The running daemon's pid, from its lock file; None when none holds the lock."""
    directory = directory or runtime_dir()
    lock_file = directory / "daemon.lock"
    if not lock_file.exists():
        return None
    with lock_file.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            text = lock.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(lock, fcntl.LOCK_UN)
        return None


# Sent by a daemon to each connection as it stops on purpose (`aiguilleur daemon stop`):
# the shim then waits for the editor's next message before starting a new one.
DAEMON_STOPPING = "aiguilleur/daemonStopping"
