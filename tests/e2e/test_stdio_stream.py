"""The raw byte stream on stdout: only protocol frames, whatever the server code prints,
and one answer per request however malformed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.home import TestHome
from tests.support.waiting import wait_for

# Runs the real server after planting a stray print() and a raw write to fd 1 (as a C
# library would do) on a path every session takes.
STRAY = """
import os, sys
import aiguilleur.lsp.server as server
original = server.Session.show_config_problems
def noisy(self):
    print("stray print from server code")
    os.write(1, b"stray bytes on fd 1\\n")
    original(self)
server.Session.show_config_problems = noisy
from aiguilleur.cli import main
sys.exit(main(sys.argv[1:]))
"""


def frame(payload: dict[str, Any] | bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def parse_frames(data: bytes) -> list[dict[str, Any]]:
    """Every byte must belong to a well-formed frame."""
    frames = []
    while data:
        header, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"bytes outside a frame: {data[:80]!r}"
        fields = dict(line.split(b": ", 1) for line in header.split(b"\r\n"))
        assert set(fields) <= {b"Content-Length", b"Content-Type"}, header
        n = int(fields[b"Content-Length"])
        frames.append(json.loads(rest[:n]))
        data = rest[n:]
    return frames


def test_stdout_carries_only_frames_and_every_request_is_answered(
    model_home: TestHome, tmp_path: Path
) -> None:
    uri = (model_home.workspace / "a.py").as_uri()
    pos = {"line": 0, "character": 4}
    messages = [
        frame(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"capabilities": {}, "rootUri": model_home.workspace.as_uri()},
            }
        ),
        frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        frame(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": uri,
                        "languageId": "python",
                        "version": 1,
                        "text": "def f():\n    pass\n",
                    }
                },
            }
        ),
        frame(b"{this is not json"),
        # Missing position, wrong types, unknown method, null params.
        frame(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "textDocument/inlineCompletion",
                "params": {"textDocument": {"uri": uri}},
            }
        ),
        frame(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "textDocument/completion",
                "params": {"textDocument": {"uri": 5}, "position": {"line": "x"}},
            }
        ),
        frame({"jsonrpc": "2.0", "id": 4, "method": "aiguilleur/noSuchMethod", "params": {}}),
        frame({"jsonrpc": "2.0", "id": 5, "method": "textDocument/completion", "params": None}),
        frame(
            {
                "jsonrpc": "2.0",
                "id": 6,
                "method": "textDocument/inlineCompletion",
                "params": {
                    "textDocument": {"uri": uri},
                    "position": pos,
                    "context": {"triggerKind": 2},
                },
            }
        ),
    ]
    repo = Path(__file__).parents[2]
    daemon_err = tmp_path / "daemon.out"
    if model_home.mode == "daemon":
        # The server code runs in the daemon: plant the stray output there, and start it
        # before the editor's `serve` finds it, its stdout kept to see what was written.
        with daemon_err.open("wb") as out_file:
            subprocess.Popen(
                [sys.executable, "-c", STRAY, "daemon", "run"],
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=subprocess.STDOUT,
                env=model_home.env(),
                cwd=repo,
            )
        wait_for("the daemon's socket", (model_home.run_dir / "daemon.sock").exists, 60)
        serve = [sys.executable, "-m", "aiguilleur", "serve"]
    else:
        serve = [sys.executable, "-c", STRAY, "serve", "--standalone"]
    proc = subprocess.Popen(
        serve,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=model_home.env(),
        cwd=repo,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"".join(messages))
    proc.stdin.flush()
    seen = b""
    # Wait for the answer to the valid request before shutting down.
    while b'"id": 6' not in seen:
        header = proc.stdout.readline()
        assert header.startswith(b"Content-Length: "), (header, seen[-200:])
        n = int(header.split(b":")[1])
        rest = b""
        while not rest.endswith(b"\r\n\r\n"):
            rest += proc.stdout.readline()
        seen += header + rest + proc.stdout.read(n)
    shutdown = frame({"jsonrpc": "2.0", "id": 7, "method": "shutdown"})
    after = frame(
        {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": uri}, "position": pos},
        }
    )
    out, err = proc.communicate(
        shutdown + after + frame({"jsonrpc": "2.0", "method": "exit"}), timeout=120
    )
    stdout = seen + out
    frames = parse_frames(stdout)
    assert b"stray" not in stdout
    server_err = daemon_err.read_bytes() if model_home.mode == "daemon" else err
    assert b"stray print from server code" in server_err
    assert b"stray bytes on fd 1" in server_err
    answers: dict[int, list[dict[str, Any]]] = {}
    for f in frames:
        if "id" in f and "method" not in f and isinstance(f["id"], int):
            answers.setdefault(f["id"], []).append(f)
    assert sorted(answers) == [1, 2, 3, 4, 5, 6, 7, 8], err.decode(errors="replace")[-3000:]
    assert all(len(a) == 1 for a in answers.values()), answers
    for bad in (2, 3, 4, 5, 8):  # 8 came after shutdown
        assert "error" in answers[bad][0], answers[bad]
    assert "result" in answers[6][0]
    assert answers[6][0]["result"]["items"][0]["insertText"]
    assert proc.returncode == 0


def _session(home: TestHome, *args: str) -> tuple[list[dict[str, Any]], bytes]:
    """A short session of an editor (open, ask, leave): the frames and the server's stderr."""
    uri = (home.workspace / "a.py").as_uri()
    messages = [
        {"id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"method": "initialized", "params": {}},
        {
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = "}
            },
        },
        {
            "id": 2,
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 4}},
        },
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiguilleur", "serve", *home.serve_args, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=home.env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"".join(frame({"jsonrpc": "2.0", **m}) for m in messages))
    proc.stdin.flush()
    seen = b""
    while b'"id":2' not in seen.replace(b" ", b""):
        header = proc.stdout.readline()
        assert header.startswith(b"Content-Length: "), (header, seen[-200:])
        rest = b""
        while not rest.endswith(b"\r\n\r\n"):
            rest += proc.stdout.readline()
        seen += header + rest + proc.stdout.read(int(header.split(b":")[1]))
    leave = [{"id": 3, "method": "shutdown"}, {"method": "exit"}]
    out, err = proc.communicate(
        b"".join(frame({"jsonrpc": "2.0", **m}) for m in leave), timeout=120
    )
    assert proc.returncode == 0
    return parse_frames(seen + out), err


def test_stderr_holds_nothing_routine_and_the_log_holds_it_all(model_home: TestHome) -> None:
    """Editors show a server's stderr (Helix labels each line an error): at the default
    verbosity the shim, the daemon and a standalone server keep routine lines for their
    logs; -v puts them on stderr too."""
    frames, err = _session(model_home)
    assert any(f.get("id") == 2 and "result" in f for f in frames)
    assert err == b"", err.decode(errors="replace")
    logged = model_home.serve_log + model_home.daemon_log
    # (the daemon's own line for the load, or the window's when it saw the load end)
    assert "INFO" in logged and ("daemon.model_loaded" in logged or "model.loaded" in logged)
    if model_home.mode == "daemon":
        assert "shim.starting_daemon" in model_home.serve_log
    model_home.stop_daemon()
    _, err = _session(model_home, "-v")
    assert b"INFO" in err
