"""Where the servers log: everything to a log file, and on stderr only what the user must
see (warnings and errors) unless `-v`. Editors show a language server's stderr, some as
errors (Helix labels every line `[ERROR]`): routine lines belong in the file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

MAX_LOG_BYTES = 8 << 20  # a log past this is moved to `<name>.1` when a process opens it
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"


def keep_small(path: Path) -> None:
    """Start a new log when it grew past MAX_LOG_BYTES (the old one stays as `.1`)."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > MAX_LOG_BYTES:
            path.replace(path.with_name(path.name + ".1"))


def _same_file(path: Path, fd: int) -> bool:
    try:
        a, b = path.stat(), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup_logging(
    verbose: int,
    log_file: Path | None,
    *,
    filters: Sequence[logging.Filter] = (),
    quiet_stderr: bool = False,
) -> None:
    """The aiguilleur loggers at INFO (DEBUG with -v), to `log_file` when given and to
    stderr, each through `filters`; with `quiet_stderr`, stderr gets warnings and errors
    only unless -v."""
    level = logging.DEBUG if verbose >= 1 else logging.INFO
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        keep_small(log_file)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if log_file is None or not _same_file(log_file, sys.stderr.fileno()):
        to_stderr = logging.StreamHandler(sys.stderr)
        if quiet_stderr and not verbose:
            to_stderr.setLevel(logging.WARNING)
        handlers.append(to_stderr)
    for handler in handlers:
        handler.setFormatter(formatter)
        for f in filters:
            handler.addFilter(f)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    logging.getLogger("aiguilleur").setLevel(level)
