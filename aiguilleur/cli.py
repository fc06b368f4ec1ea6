"""Command line: `aiguilleur serve|daemon|complete|doctor|demo|pull|usage|trust|index|cache`:
argument parsing and dispatch only; the bodies live in commands/ (and `serve` in
daemon/shim.py or lsp/)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from aiguilleur import __version__

log = logging.getLogger("aiguilleur")


def _setup_logging(verbose: int, log_file: str | None, lsp_server: bool = True) -> None:
    """A command's logs: on stderr (or in `log_file`)."""
    from aiguilleur.logs import setup_logging

    setup_logging(verbose, Path(log_file) if log_file else None, filters=_filters(lsp_server))


def _server_logging(verbose: int, log_file: Path, lsp_server: bool = True) -> None:
    """A server's logs (the editor's `serve`, the daemon): all in `log_file`, and on
    stderr only warnings and errors unless -v."""
    from aiguilleur.logs import setup_logging

    setup_logging(verbose, log_file, filters=_filters(lsp_server), quiet_stderr=True)


def _filters(lsp_server: bool) -> list[logging.Filter]:
    """pygls' answered errors as one line, where pygls runs (the shim relays bytes: no
    pygls, and lsprotocol takes 0.3 s to import)."""
    if not lsp_server:
        return []
    from aiguilleur.lsp.protocol import AnsweredErrors

    return [AnsweredErrors()]


def protect_stdout() -> BinaryIO:
    """Keep fd 1 for protocol frames only: anything else that writes to stdout (a stray
    print, a C library) lands on stderr instead of corrupting the stream."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


def _parse_host_port(value: str, allow_remote: bool) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not allow_remote:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SystemExit(
                f"aiguilleur: refusing to listen on {host}: it is not a loopback address and "
                "anyone who can reach it could use your models and keys. "
                "Pass --allow-remote if you mean it."
            )
    return host, int(port)


def serve_log(log_file: str | None) -> Path:
    from aiguilleur.config.homes import log_dir

    return Path(log_file) if log_file else log_dir() / "serve.log"


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.standalone and not args.tcp:
        from aiguilleur.daemon.shim import serve_through_daemon

        protocol_out = protect_stdout()
        _server_logging(args.verbose, serve_log(args.log_file), lsp_server=False)
        return serve_through_daemon(protocol_out, verbose=args.verbose)
    from aiguilleur.lsp.server import build_server

    stdout = protect_stdout() if not args.tcp else None
    _server_logging(args.verbose, serve_log(args.log_file))
    server, session = build_server()
    # An editor that gives up waiting sends SIGTERM: leave through the same `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.tcp:
            host, port = _parse_host_port(args.tcp, args.allow_remote)
            log.info("serve.tcp host=%s port=%d", host, port)
            server.start_tcp(host, port)
        else:
            log.info("serve.stdio version=%s", __version__)
            server.start_io(sys.stdin.buffer, stdout)
    finally:
        # After `exit` (pygls leaves through SystemExit) or when the editor just went away:
        # let the engine finish saving its KV state and the store write it to disk.
        session.completion.finish()
        session.runtime.close()
        log.info("serve.stopped")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    config = Path(args.config) if args.config else None
    if args.action == "run":
        from aiguilleur.daemon.daemon import DEFAULT_IDLE_S, run_daemon
        from aiguilleur.daemon.identity import daemon_dir, identity, log_path

        directory = Path(args.dir) if args.dir else daemon_dir(identity(config))
        log_file = Path(args.log_file) if args.log_file else log_path(directory)
        _server_logging(args.verbose, log_file)
        idle_s = args.idle if args.idle is not None else DEFAULT_IDLE_S
        return run_daemon(directory, config, idle_s)
    _setup_logging(args.verbose, args.log_file, lsp_server=False)
    from aiguilleur.commands.daemon import daemon_status, daemon_stop

    if args.action == "stop":
        return daemon_stop(config, every=args.all)
    return daemon_status(config)


def cmd_complete(args: argparse.Namespace) -> int:
    from aiguilleur.commands.complete import complete_once

    _setup_logging(args.verbose, None)
    return asyncio.run(complete_once(args.location, args.timeout))


def cmd_doctor(args: argparse.Namespace) -> int:
    from aiguilleur.commands.doctor import run_doctor

    _setup_logging(args.verbose, None)
    return run_doctor()


def cmd_demo(args: argparse.Namespace) -> int:
    from aiguilleur.commands.demo import run_demo

    _setup_logging(args.verbose, None)
    return run_demo(args.file, args.model)


def cmd_pull(args: argparse.Namespace) -> int:
    from aiguilleur.commands.pull import pull

    _setup_logging(args.verbose, None)
    return pull(args.model)


def cmd_usage(args: argparse.Namespace) -> int:
    from aiguilleur.commands.usage import run_usage

    _setup_logging(args.verbose, None)
    return run_usage(args.days, args.json)


def cmd_index(args: argparse.Namespace) -> int:
    from aiguilleur.commands.index import run_index

    _setup_logging(args.verbose, None)
    return run_index(args.directory)


def cmd_cache(args: argparse.Namespace) -> int:
    from aiguilleur.commands.cache import cache_clear, cache_stats

    _setup_logging(args.verbose, None)
    return cache_clear() if args.action == "clear" else cache_stats()


def cmd_trust(args: argparse.Namespace) -> int:
    from aiguilleur.commands.trust import run_trust

    _setup_logging(args.verbose, None)
    return run_trust(args.directory, args.revoke, args.list)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiguilleur", description="An AI language server: local and routed completions."
    )
    parser.add_argument("--version", action="version", version=f"aiguilleur {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="more logs (-vv: also the libraries')",
        )

    p = sub.add_parser(
        "serve",
        help="the language server an editor starts (stdio, relayed to the shared daemon)",
    )
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow --tcp on a non-loopback address"
    )
    p.add_argument(
        "--log-file",
        help="the log (default: serve.log in $XDG_STATE_HOME/aiguilleur); stderr gets "
        "warnings and errors only, unless -v",
    )
    p.add_argument("--stdio", action="store_true", help="accepted for editors that pass it")
    p.add_argument(
        "--standalone",
        action="store_true",
        help="one process for this editor alone, with its own model, instead of relaying "
        "to the user's shared daemon (the default, one model for every editor window)",
    )
    # What `--standalone`'s absence means; kept so that configs written for 0.x still work.
    p.add_argument("--daemon", action="store_true", help=argparse.SUPPRESS)
    common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "daemon", help="the shared daemons: `status` (default: all of them), `stop`, `run`"
    )
    p.add_argument("action", nargs="?", choices=["status", "stop", "run"], default="status")
    p.add_argument(
        "--idle",
        type=float,
        default=None,
        help="with run: seconds without a session before it exits (default 600)",
    )
    p.add_argument("--config", help="the user config file (default: the usual one)")
    p.add_argument(
        "--all", action="store_true", help="with stop: every daemon of yours, not only this one"
    )
    p.add_argument("--dir", help=argparse.SUPPRESS)  # run: the directory the shim chose
    p.add_argument("--log-file", help="with run: the log (default: daemon.log in its directory)")
    common(p)
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("complete", help="one completion at FILE:LINE:COL (1-based), printed")
    p.add_argument("location", metavar="FILE:LINE:COL")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the model to load and answer",
    )
    common(p)
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("doctor", help="check config, model, FIM tokens and cache; say how to fix")
    common(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="drive `aiguilleur serve` like an editor and show suggestions")
    p.add_argument("--file", help="source file to type into (default: one of the stdlib)")
    p.add_argument("--model", help="GGUF model to use (default: configured or discovered)")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pull", help="download a recommended GGUF code model")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="alias (0.5b, 1.5b, 3b, 7b or full alias); default qwen2.5-coder-1.5b",
    )
    common(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("usage", help="spend per day, key, model and feature; budgets left")
    p.add_argument("--days", type=int, default=30, help="how far back (0: everything)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    common(p)
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser(
        "trust", help="let a workspace's .aiguilleur.toml, as it is now, use all its settings"
    )
    p.add_argument("directory", nargs="?", help="the workspace (default: the current dir)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--revoke", action="store_true", help="stop trusting it")
    group.add_argument("--list", action="store_true", help="list the trusted workspace files")
    common(p)
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser(
        "index", help="build the repository index of a workspace (its definitions, per file)"
    )
    p.add_argument("directory", nargs="?", help="the workspace (default: the current dir)")
    common(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("cache", help="KV state store: `stats` (default) or `clear`")
    p.add_argument("action", nargs="?", choices=["stats", "clear"], default="stats")
    common(p)
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
