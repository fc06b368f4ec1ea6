"""Which daemon is a window's own, and where it lives.

A daemon is shared only by windows that would build the same host: the same aiguilleur
(version, installation, code on disk, Python), the same config, cache and data homes, and
the same values of the environment variables the user file's keys name. That identity,
hashed, names the daemon's directory in the user's runtime dir: its socket, its lock (one
daemon per identity), its log and a description of the identity without any secret (the
key variables' names, never their values nor a hash of one alone).

Small and free of the engine: the shim an editor starts computes the identity in about a
millisecond."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec

import aiguilleur
from aiguilleur.config.homes import cache_home, data_dir, user_config_path

# Sent by a daemon to each connection as it stops on purpose (`aiguilleur daemon stop`):
# the shim then waits for the editor's next message before starting a new one.
DAEMON_STOPPING = "aiguilleur/daemonStopping"
IDENTITY_FILE = "identity.json"
# A directory no daemon holds and nothing touched for this long is removed (the old
# version's after an upgrade, a profile no longer used).
STALE_AFTER_S = 7 * 86400


class Installation(msgspec.Struct, frozen=True):
    """The aiguilleur a process runs: an upgrade changes `code` (and `version`)."""

    version: str
    package: str  # the directory of the aiguilleur package
    python: str
    code: str  # a digest of the package's source files: names, sizes, times


class DaemonIdentity(msgspec.Struct, frozen=True):
    installation: Installation
    user_config: str
    cache_home: str
    data_home: str
    key_variables: tuple[str, ...]  # the names only: their values go into `digest` alone
    digest: str


def package_dir() -> Path:
    return Path(aiguilleur.__file__).resolve().parent


def installation(package: Path | None = None) -> Installation:
    """What is installed at `package` (this process's package by default) now."""
    package = package or package_dir()
    files = []
    for path in sorted(package.rglob("*.py")):
        with contextlib.suppress(OSError):
            st = path.stat()
            files.append(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}")
    return Installation(
        version=installed_version(package) or aiguilleur.__version__,
        package=str(package),
        python=sys.executable,
        code=hashlib.sha256("\n".join(files).encode()).hexdigest()[:16],
    )


def installed_version(package: Path) -> str | None:
    """The version the package on disk declares (an upgrade rewrites it in place)."""
    try:
        text = (package / "__init__.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    return found.group(1) if found else None


def key_variables(user_config: Path) -> list[str]:
    """The environment variables the user file's keys name (`[keys.NAME] env = ...`)."""
    try:
        keys = tomllib.loads(user_config.read_text(encoding="utf-8")).get("keys", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # the daemon says what is wrong with it; the identity goes on without
    if not isinstance(keys, dict):
        return []
    return sorted(
        {k["env"] for k in keys.values() if isinstance(k, dict) and isinstance(k.get("env"), str)}
    )


def identity(user_config: Path | None = None) -> DaemonIdentity:
    config = (user_config or user_config_path()).expanduser().absolute()
    names = key_variables(config)
    install = installation()
    digest = hashlib.sha256(msgspec.json.encode(install))
    for part in (str(config), str(cache_home().absolute()), str(data_dir().absolute())):
        digest.update(b"\0" + part.encode())
    for name in names:
        value = os.environ.get(name)
        digest.update(b"\0" + name.encode() + (b"=" + value.encode() if value else b" unset"))
    return DaemonIdentity(
        installation=install,
        user_config=str(config),
        cache_home=str(cache_home().absolute()),
        data_home=str(data_dir().absolute()),
        key_variables=tuple(names),
        digest=digest.hexdigest()[:12],
    )


def runtime_dir() -> Path:
    """Private to the user: every daemon's directory lives here."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "aiguilleur" if base else Path(f"/tmp/aiguilleur-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user; set XDG_RUNTIME_DIR")
    return path


def daemon_dir(ident: DaemonIdentity) -> Path:
    """The directory of the daemon of `ident`, with its identity written in it."""
    path = runtime_dir() / ident.digest
    path.mkdir(mode=0o700, exist_ok=True)
    described = path / IDENTITY_FILE
    if described.exists():
        described.touch()  # in use: not stale (prune_stale)
    else:
        temporary = path / f".{IDENTITY_FILE}.{os.getpid()}"
        temporary.write_bytes(msgspec.json.format(msgspec.json.encode(ident)))
        temporary.replace(described)
    return path


def prune_stale(keep: Path) -> list[Path]:
    """Remove the directories of daemons long gone; the ones removed."""
    removed = []
    for directory in all_daemon_dirs():
        if directory == keep or daemon_pid(directory) is not None:
            continue
        try:
            newest = max(p.stat().st_mtime for p in directory.iterdir())
        except (OSError, ValueError):
            continue
        if time.time() - newest > STALE_AFTER_S:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def all_daemon_dirs() -> list[Path]:
    """Every daemon directory of the user, running or not."""
    return sorted(p.parent for p in runtime_dir().glob(f"*/{IDENTITY_FILE}"))


def read_identity(directory: Path) -> DaemonIdentity | None:
    try:
        return msgspec.json.decode((directory / IDENTITY_FILE).read_bytes(), type=DaemonIdentity)
    except (OSError, msgspec.DecodeError):
        return None


def socket_path(directory: Path) -> Path:
    return directory / "daemon.sock"


def log_path(directory: Path) -> Path:
    return directory / "daemon.log"


@contextlib.contextmanager
def daemon_lock(directory: Path) -> Iterator[bool]:
    """True while this process is the daemon of `directory`; False when another is."""
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


def daemon_pid(directory: Path) -> int | None:
    """The pid of the daemon of `directory`, from its lock; None when none holds it."""
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
