"""One daemon for every editor window: `aiguilleur serve --daemon` (what the editor
starts) relays to the user's daemon over a Unix socket, starting it when none answers.
Real processes: the shims, the daemon, the tiny model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_openrouter import FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import idle, inline, lsp_session, open_doc, status

SOURCE = "def add(a, b):\n    return a + b\n\nx = \n"


def daemon_env(home: TestHome) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": str(home.root / "run")}  # as TestHome sets it


def aiguilleur(home: TestHome, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiguilleur", *args],
        env=home.env(**daemon_env(home)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def daemon_home(model_home: TestHome) -> Iterator[TestHome]:
    yield model_home
    # Whatever a test left running stops here (the daemon outlives its editors).
    aiguilleur(model_home, "daemon", "stop")


def window(home: TestHome, init_options: object = None) -> object:
    return lsp_session(
        home, env=daemon_env(home), extra_args=["--daemon"], init_options=init_options
    )


async def test_two_windows_share_one_daemon_one_model_and_both_get_suggestions(
    daemon_home: TestHome,
) -> None:
    async with window(daemon_home) as first, window(daemon_home) as second:
        a = await idle(first)
        b = await idle(second)
        # One process answers both, and it is neither editor's child shim.
        assert a.shared and b.shared and a.pid == b.pid
        uri_a = open_doc(first, daemon_home.workspace / "a.py", SOURCE)
        uri_b = open_doc(second, daemon_home.workspace / "b.py", SOURCE)
        got = await asyncio.gather(inline(first, uri_a, 3, 4), inline(second, uri_b, 3, 4))
        assert all(len(items) == 1 and items[0] for items in got), got
        after = await status(first)
        # One engine did both: its counters hold the other window's request too.
        assert after.engine.completed >= 2
    shown = aiguilleur(daemon_home, "daemon", "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"pid {a.pid}" in shown.stdout and "aiguilleur-tiny" in shown.stdout


async def test_one_windows_settings_do_not_change_another_windows_routes(
    daemon_home: TestHome,
) -> None:
    # The user's routes send completions to a team server first. One window's editor
    # settings mark *.py private: only that window's code stays on the machine.
    with FakeOpenRouter(models=[FakeModel("vendor/coder", reply="42")], anonymous=True) as fake:
        daemon_home.config_file.write_text(
            daemon_home.config_file.read_text()
            + '[[routes.completion]]\nname = "team"\nbackend = "openai-compatible"\n'
            f'base_url = "{fake.base_url}"\nmodel = "vendor/coder"\n'
            '[[routes.completion]]\nname = "local"\nbackend = "local"\n'
        )
        careful = {"privacy": {"private": ["*.py"]}}
        async with window(daemon_home, careful) as kept, window(daemon_home) as sent:
            await idle(kept)
            await idle(sent)
            uri_kept = open_doc(kept, daemon_home.workspace / "k.py", SOURCE)
            uri_sent = open_doc(sent, daemon_home.workspace / "s.py", SOURCE)
            from_sent = await inline(sent, uri_sent, 3, 4)
            asked = len(fake.bodies("chat/completions"))
            from_kept = await inline(kept, uri_kept, 3, 4)
            asked_after = len(fake.bodies("chat/completions"))
    assert from_sent == ["42"] and asked == 1
    assert from_kept != ["42"] and asked_after == 1  # the private window's code stayed


def test_a_second_daemon_started_by_a_race_leaves_in_favour_of_the_first(
    daemon_home: TestHome,
) -> None:
    env = daemon_home.env(**daemon_env(daemon_home))
    cmd = [sys.executable, "-m", "aiguilleur", "daemon", "run", "--idle", "30"]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    sock = Path(daemon_env(daemon_home)["XDG_RUNTIME_DIR"]) / "aiguilleur" / "daemon.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0
    assert "already_running" in second.stderr
    assert first.poll() is None  # the first one still serves
    stopped = aiguilleur(daemon_home, "daemon", "stop")
    assert stopped.returncode == 0 and f"pid {first.pid}" in stopped.stdout
    first.wait(30)
    assert not sock.exists()


async def test_the_daemon_leaves_once_idle_and_the_next_window_starts_a_new_one(
    daemon_home: TestHome,
) -> None:
    env = daemon_home.env(**daemon_env(daemon_home))
    cmd = [sys.executable, "-m", "aiguilleur", "daemon", "run", "--idle", "1"]
    daemon = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    sock = Path(daemon_env(daemon_home)["XDG_RUNTIME_DIR"]) / "aiguilleur" / "daemon.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    async with window(daemon_home) as editor:
        first = await idle(editor)
        await asyncio.sleep(2)  # longer than the idle time: a session keeps it
        assert (await status(editor)).pid == first.pid
    assert daemon.wait(30) == 0  # no session for a second: it left by itself
    async with window(daemon_home) as editor:
        again = await idle(editor)
    assert again.pid != first.pid and again.pid != os.getpid()


async def test_after_kill_9_of_the_daemon_the_next_window_gets_a_new_one(
    daemon_home: TestHome,
) -> None:
    # A daemon killed outright leaves its socket file behind, and its lock with it gone.
    async with window(daemon_home) as editor:
        first = await idle(editor)
        os.kill(first.pid, 9)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(first.pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
    sock = Path(daemon_env(daemon_home)["XDG_RUNTIME_DIR"]) / "aiguilleur" / "daemon.sock"
    assert sock.exists()  # stale: nobody listens there
    async with window(daemon_home) as editor:
        again = await idle(editor)
        uri = open_doc(editor, daemon_home.workspace / "a.py", SOURCE)
        items = await inline(editor, uri, 3, 4)
    assert again.pid != first.pid and len(items) == 1
