"""Helix: the shipped snippets parse, keep Helix's usual servers and name real commands;
and a real Helix 25.07 (Debian sid's, tests/support/editor_packages.py) set up as the
editors/helix README says, in tmux: `send-keys` types, `capture-pane` reads the screen,
and `hx -vvv --log` records every message between Helix and the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aiguilleur.lsp.actions import ACTION_COMMAND
from aiguilleur.lsp.chat import CHAT_COMMAND, NEW_CHAT_COMMAND
from aiguilleur.lsp.status import USAGE_COMMAND
from aiguilleur.remote.acceptance import acceptance_rows
from tests.support.editor_packages import EditorBinary, EditorUnavailable, debian_editor
from tests.support.fake_openrouter import FakeModel, FakeOpenRouter, compat_route
from tests.support.home import TestHome
from tests.support.waiting import wait_for

HELIX = Path(__file__).resolve().parents[2] / "editors" / "helix"
# Helix's own defaults (helix-editor/helix languages.toml) for the languages we list.
DEFAULTS = {
    "python": ["ruff", "jedi", "pylsp"],
    "rust": ["rust-analyzer"],
    "go": ["gopls", "golangci-lint-lsp"],
    "typescript": ["typescript-language-server"],
    "javascript": ["typescript-language-server"],
    "markdown": ["marksman"],
}


def test_languages_snippet_adds_aiguilleur_and_keeps_the_usual_servers() -> None:
    data = tomllib.loads((HELIX / "languages.toml").read_text())
    server = data["language-server"]["aiguilleur"]
    assert [server["command"], *server["args"]] == ["aiguilleur", "serve"]
    languages = {lang["name"]: lang["language-servers"] for lang in data["language"]}
    assert set(languages) == set(DEFAULTS)
    for name, servers in languages.items():
        assert servers == [*DEFAULTS[name], "aiguilleur"], name


def test_key_bindings_name_real_commands() -> None:
    data = tomllib.loads((HELIX / "config.toml").read_text())
    bindings = data["keys"]["normal"]["space"]["i"]
    assert bindings["a"] == "code_action"
    commands = {v.split()[-1] for v in bindings.values() if v.startswith(":lsp-workspace-command")}
    assert commands == {NEW_CHAT_COMMAND, USAGE_COMMAND}
    assert CHAT_COMMAND and ACTION_COMMAND  # reached through code actions


def test_the_readme_stays_short() -> None:
    text = (HELIX / "README.md").read_text()
    assert len([line for line in text.splitlines() if line.strip()]) <= 10


# --- a real Helix -------------------------------------------------------------------

SOURCE = "def add(a, b):\n    return a + b\n\ns = 'é😋' + \nprint(add(1, 2))\n"
DOCUMENTED = 'def add(a, b):\n    """Add a and b."""\n    return a + b'
LOCAL = (
    "[completion]\nmax_tokens = 8\nprefix_tokens = 256\nsuffix_tokens = 32\n"
    "[chat]\nmax_tokens = 24\n[actions]\nmax_tokens = 24\n"
)


@pytest.fixture(scope="session")
def hx() -> EditorBinary:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian's tmux package): it drives Helix")
    try:
        return debian_editor("helix")
    except EditorUnavailable as error:
        pytest.skip(f"Helix from Debian sid: {error}")


def stray_controls(screen: str) -> list[str]:
    """Characters a terminal shows as garbage: C0/C1 controls (a tab or newline the
    terminal has already laid out), the replacement character."""
    return [
        repr(c) for c in screen if c != "\n" and (unicodedata.category(c) == "Cc" or c == "\ufffd")
    ]


class Helix:
    """Helix in a private tmux server, with the user's config (editors/helix appended),
    `aiguilleur` on PATH and nothing else of the developer's."""

    def __init__(self, home: TestHome, hx: EditorBinary, file: Path) -> None:
        self.home, self.file = home, file
        self.log = home.root / "helix.log"
        self.socket = home.root / "tmux.sock"
        self.screens: list[str] = []
        config = home.root / "config" / "helix"
        config.mkdir(parents=True, exist_ok=True)
        (config / "languages.toml").write_text((HELIX / "languages.toml").read_text())
        (config / "config.toml").write_text((HELIX / "config.toml").read_text())
        # Only `aiguilleur` is found (as after `pipx install`): the other servers the
        # snippet keeps (ruff, jedi, pylsp) are absent, as on many machines.
        bin_dir = home.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "aiguilleur").symlink_to(Path(sys.executable).parent / "aiguilleur")
        self.env = home.env(**hx.env, PATH=f"{bin_dir}{os.pathsep}/usr/bin:/bin")
        self.env["TERM"] = "xterm-256color"
        self.hx = hx

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self) -> None:
        # Several arguments: tmux runs Helix directly, no login shell to reset PATH.
        self.tmux(
            *("-f", "/dev/null", "new-session", "-d", "-x", "110", "-y", "32"),
            *("-c", str(self.file.parent)),
            *(str(self.hx.path), "-vvv", "--log", str(self.log), self.file.name),
        )
        wait_for("the model to load", self.server_ready)

    def server_ready(self) -> bool:
        """Helix has initialized our server, and the model it uses is loaded: logged by
        the server on Helix's stderr, or, relayed to the daemon, in the daemon's log."""
        helix = self.read_log()
        if self.home.mode == "standalone":
            return "model.loaded" in helix
        return '"method":"initialized"' in helix and "model_loaded" in self.home.daemon_log

    def keys(self, *keys: str) -> None:
        # An Escape followed at once by a key reads as Alt+key: send it on its own.
        batch: list[str] = []
        for key in [*keys, ""]:
            if key in ("Escape", "") and batch:
                self.tmux("send-keys", *batch)
                batch = []
            if key == "Escape":
                self.tmux("send-keys", "Escape")
                time.sleep(0.2)
            elif key:
                batch.append(key)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def screen(self) -> str:
        text = self.tmux("capture-pane", "-p")
        self.screens.append(text)
        return text

    def wait_screen(self, what: str, check: Callable[[str], bool]) -> str:
        def probe() -> str | None:
            screen = self.screen()
            return screen if check(screen) else None

        return wait_for(what, probe)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def saved(self) -> str:
        before = self.mtime()
        self.keys("Escape", ":w", "Enter")

        # Read once written, in the same probe: Helix swaps a new copy in, so a second
        # read can fall between its removal and the rename.
        # Helix first renames the old file away: a read that came before the rename and
        # an mtime taken after it would pass the old text off as written.
        def written() -> str | None:
            first = self.mtime()
            text = read(self.file)
            settled = first == self.mtime() and first not in (before, 0)
            return text if text and settled else None

        return wait_for("the file to be written", written)

    def mtime(self) -> int:
        try:
            return self.file.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"],
            env=self.env,
            capture_output=True,
            timeout=30,
        )

    def problems(self) -> list[str]:
        """Lines of Helix's log where our server wrote on stderr (Helix records it as
        `aiguilleur err <-` and shows it as an error; at the default verbosity only
        warnings and errors go there, and none is expected here) and Helix's errors
        about it (a failed request, a response it could not parse)."""
        out = []
        for line in self.read_log().splitlines():
            if "aiguilleur" not in line:
                continue
            if ' err <- "' in line or "[ERROR]" in line:
                out.append(line)
        return out


@contextmanager
def helix(home: TestHome, hx: EditorBinary, config: str) -> Iterator[Helix]:
    home.write_config(config)
    src = home.workspace / "m.py"
    src.write_text(SOURCE)
    editor = Helix(home, hx, src)
    try:
        editor.start()
        yield editor
    finally:
        screen = editor.screens[-1] if editor.screens else ""
        editor.stop()
        print("--- last screen ---\n" + screen)
        print("--- helix log (aiguilleur) ---")
        lines = [line[:300] for line in editor.read_log().splitlines() if "aiguilleur" in line]
        print("\n".join(lines)[-6000:])
    assert editor.problems() == []
    for screen in editor.screens:
        assert stray_controls(screen) == [], screen


def tiny_config(tiny_model: Path, routes: str = "") -> str:
    return f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n' + LOCAL + routes


def last_completion_items(log: str) -> list[dict[str, object]]:
    """Our last completion answer, as Helix received it."""
    for line in reversed(log.splitlines()):
        if "aiguilleur <- {" in line and '"items"' in line:
            message = json.loads(line.split("aiguilleur <- ", 1)[1])
            items: list[dict[str, object]] = message["result"]["items"]
            return items
    return []


def read(path: Path) -> str:
    """The file, or nothing while Helix swaps the new copy in."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def type_on_line_4(editor: Helix, text: str) -> None:
    editor.keys("Escape", ":4", "Enter")
    editor.keys("A")
    editor.type(text)


def test_typing_opens_the_menu_and_enter_inserts_exactly_the_suggestion(
    home: TestHome, tiny_model: Path, hx: EditorBinary
) -> None:
    # A model can answer with bytes a terminal acts on (a bell, an escape): none of them
    # reaches the buffer or the screen.
    reply = "me.upper()\x07 + '!'\x1b\nprint(s)"
    with (
        FakeOpenRouter(models=[FakeModel("vendor/coder", reply=reply)], anonymous=True) as fake,
        helix(
            home, hx, tiny_config(tiny_model, compat_route("completion", fake, "vendor/coder"))
        ) as ed,
    ):
        type_on_line_4(ed, "na")
        # Helix asks by itself after two letters; the menu shows our item's first line.
        ed.wait_screen("the completion menu", lambda s: "name.upper() + '!'" in s)
        assert ed.screen().splitlines()[3].rstrip().endswith("+ na")  # not inserted yet
        ed.keys("Tab")  # selects (and previews) our item
        ed.keys("Enter")  # takes it
        text = ed.saved()
    assert text == SOURCE.replace("+ \n", "+ name.upper() + '!'\nprint(s)\n")
    # Counted as accepted: it stands typed where it was shown.
    [row] = wait_for(
        "the outcome in the ledger",
        lambda: acceptance_rows(home.root / "data" / "aiguilleur" / "ledger.db"),
    )
    assert row.route == "team" and row.accepted == 1 and row.shown >= 1


def test_a_suggestion_of_the_local_model_is_inserted_as_it_came(
    home: TestHome, tiny_model: Path, hx: EditorBinary
) -> None:
    # The tiny model's random text: whatever it is, Helix inserts it unchanged (as the
    # server sent it: the log holds the answer) and the screen shows no control bytes.
    with helix(home, hx, tiny_config(tiny_model)) as ed:
        type_on_line_4(ed, "na")
        wait_for("our completion answer", lambda: last_completion_items(ed.read_log()))
        [item] = last_completion_items(ed.read_log())
        label = str(item["label"])
        ed.wait_screen("the completion menu", lambda s: label[:12] in s)
        edit = item["textEdit"]
        assert isinstance(edit, dict)
        ed.keys("Tab", "Enter")
        text = ed.saved()
    line = edit["range"]["start"]["line"]
    assert line == 3
    # The edit replaces the typed "na" (from its start) with the suggestion.
    expected = SOURCE.replace("+ \n", "+ " + str(edit["newText"]) + "\n")
    assert text == expected


def test_space_a_lists_our_actions_and_document_edits_the_selected_lines_only(
    home: TestHome, tiny_model: Path, hx: EditorBinary
) -> None:
    answer = f"```python\n{DOCUMENTED}\n```"
    with (
        FakeOpenRouter(models=[FakeModel("vendor/doc", reply=answer)], anonymous=True) as fake,
        helix(
            home, hx, tiny_config(tiny_model, compat_route("code_action", fake, "vendor/doc"))
        ) as ed,
    ):
        ed.keys(":1", "Enter", "x", "x")  # lines 1-2 selected
        ed.keys("Space", "a")
        menu = ed.wait_screen("our code actions", lambda s: "aiguilleur: Document" in s)
        titles = [line for line in menu.splitlines() if "aiguilleur: " in line]
        for title in ("Document this code", "Write tests", "Explain"):
            assert any(title in t for t in titles), menu
        # Down to Document, in the order Helix shows them.
        index = next(i for i, t in enumerate(titles) if "Document" in t)
        ed.keys(*["Down"] * index, "Enter")
        ed.wait_screen("the docstring", lambda s: '"""Add a and b."""' in s)
        text = ed.saved()
    assert text == SOURCE.replace("def add(a, b):\n    return a + b", DOCUMENTED)


def test_space_i_c_opens_a_chat_and_send_streams_the_answer_into_it(
    home: TestHome, tiny_model: Path, hx: EditorBinary
) -> None:
    with helix(home, hx, tiny_config(tiny_model)) as ed:
        ed.keys("Space", "i", "c")
        ed.wait_screen("the chat document", lambda s: "## You" in s and "```python" in s)
        chat = ed.screen()
        lines = chat.splitlines()
        row = next(i for i, line in enumerate(lines) if line.rstrip().endswith("## You"))
        ed.keys(":" + str(row + 2), "Enter", "i")  # the empty line under "## You"
        ed.type("What does this do?")
        ed.keys("Escape", "Space", "a")
        menu = ed.wait_screen("the Send action", lambda s: "aiguilleur: Send" in s)
        titles = [line for line in menu.splitlines() if "aiguilleur: " in line]
        index = next(i for i, t in enumerate(titles) if "Send" in t)
        ed.keys(*["Down"] * index, "Enter")
        # The local model's answer streams in under a heading, and a new "## You" follows.
        done = ed.wait_screen(
            "the answer", lambda s: "## aiguilleur ·" in s and s.count("## You") == 2
        )
        [chat] = list((home.root / "data").rglob("*.md"))
        ed.keys("Escape", ":w", "Enter")  # the answer is in Helix's buffer until saved
        saved = wait_for("the chat saved", lambda: "## aiguilleur ·" in read(chat))
    assert "What does this do?" in done
    assert saved
