"""One daemon for every editor window: `aiguilleur serve` (what the editor starts)
relays to the user's daemon over a Unix socket, starting it when none answers, and
starts a new one when it dies. Real processes: the shims, the daemon, the tiny model."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiguilleur.daemon.identity import daemon_dir, daemon_pid, identity
from aiguilleur.daemon.shim import start_daemon
from tests.support.fake_openrouter import FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import (
    change_doc,
    idle,
    inline,
    kill_9_server,
    last_completion,
    lsp_session,
    open_doc,
    status,
)
from tests.support.waiting import PATIENCE

SERVER_MODES = ("daemon",)  # (tests/e2e/conftest.py)
SOURCE = "def add(a, b):\n    return a + b\n\nx = \n"


def aiguilleur(home: TestHome, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiguilleur", *args],
        env=home.env(),
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
    return lsp_session(home, init_options=init_options)


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
    env = daemon_home.env()
    cmd = [sys.executable, "-m", "aiguilleur", "daemon", "run", "--idle", "30"]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    sock = daemon_home.run_dir / "daemon.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0
    assert "already_running" in daemon_home.daemon_log
    assert first.poll() is None  # the first one still serves
    stopped = aiguilleur(daemon_home, "daemon", "stop")
    assert stopped.returncode == 0 and f"pid {first.pid}" in stopped.stdout
    first.wait(30)
    assert not sock.exists()


def test_a_daemon_killed_while_its_editor_lives_on_leaves_no_zombie(
    daemon_home: TestHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shim that started a daemon outlives it: unreaped, a killed daemon would stay in
    # the process table as <defunct>, and would look alive to the ledger, which then
    # keeps its cut requests' reservations as pending instead of settling them unknown.
    for name, value in daemon_home.env().items():
        monkeypatch.setenv(name, value)
    directory = daemon_dir(identity())
    process = start_daemon(directory, None, 30)
    deadline = time.monotonic() + PATIENCE
    while daemon_pid(directory) != process.pid and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon_pid(directory) == process.pid
    os.kill(process.pid, signal.SIGKILL)
    while Path(f"/proc/{process.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{process.pid}").exists(), "the killed daemon is a zombie"


async def test_the_daemon_leaves_once_idle_and_the_next_window_starts_a_new_one(
    daemon_home: TestHome,
) -> None:
    env = daemon_home.env()
    cmd = [sys.executable, "-m", "aiguilleur", "daemon", "run", "--idle", "1"]
    daemon = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    sock = daemon_home.run_dir / "daemon.sock"
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


async def new_daemon(editor: Any, old_pid: int) -> Any:
    """The status once a daemon other than `old_pid` answers (asked again on errors:
    while the new one starts, the shim answers for the one that died)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            shown = await status(editor)
            if shown.pid != old_pid:
                return shown
        except Exception as error:  # the shim answers for the dead one meanwhile
            assert "daemon" in str(error), error
        assert time.monotonic() < deadline, "no new daemon answered"
        await asyncio.sleep(0.1)


async def test_after_kill_9_the_window_starts_a_new_daemon_and_carries_its_files_over(
    daemon_home: TestHome,
) -> None:
    async with window(daemon_home) as editor:
        first = await idle(editor)
        uri = open_doc(editor, daemon_home.workspace / "a.py", "def add(a, b):\n")
        change_doc(editor, uri, 2, 1, 0, "    return a + b\n\nx = ")
        before = await inline(editor, uri, 3, 4)
        shown_before = await last_completion(editor, uri)
        assert len(before) == 1 and shown_before is not None
        await kill_9_server(editor, daemon_home, first.pid)
        # The user is told once, and the next request is answered by a new daemon
        # that knows the file as the editor has it: opened, then changed.
        again = await new_daemon(editor, first.pid)
        told = [m.message for m in editor.messages if "daemon stopped" in m.message]
        assert len(told) == 1, told
        assert again.shared and again.pid != first.pid
        # Same text, same model, greedy: the same suggestion from the same prompt. Had
        # the change not been carried over, line 3 would not even exist.
        assert await inline(editor, uri, 3, 4) == before
        seen = await last_completion(editor, uri)
        assert seen is not None
        assert seen["usage"]["prompt_tokens"] == shown_before["usage"]["prompt_tokens"]
        # A second death is said once more, and recovered from too.
        await kill_9_server(editor, daemon_home, again.pid)
        third = await new_daemon(editor, again.pid)
        assert third.pid not in (first.pid, again.pid)
    told = [m.message for m in editor.messages if "daemon stopped" in m.message]
    assert len(told) == 2, told


async def test_a_request_in_flight_when_the_daemon_dies_is_answered_once(
    daemon_home: TestHome,
) -> None:
    async with window(daemon_home) as editor:
        first = await idle(editor)
        uri = open_doc(editor, daemon_home.workspace / "a.py", SOURCE)
        asked = [asyncio.ensure_future(inline(editor, uri, 3, 4)) for _ in range(3)]
        await asyncio.sleep(0)  # (sent)
        os.kill(first.pid, signal.SIGKILL)
        answers = await asyncio.wait_for(asyncio.gather(*asked, return_exceptions=True), PATIENCE)
        # Each got one answer: a suggestion the daemon sent before it died, or an error
        # that says what happened. pytest-lsp fails a test on an answer to nothing.
        for answer in answers:
            assert isinstance(answer, list) or "daemon stopped" in str(answer), answer
        await new_daemon(editor, first.pid)


async def test_a_deliberate_stop_frees_the_daemon_until_the_editor_sends_something(
    daemon_home: TestHome,
) -> None:
    async with window(daemon_home) as editor:
        first = await idle(editor)
        uri = open_doc(editor, daemon_home.workspace / "a.py", SOURCE)
        stopped = aiguilleur(daemon_home, "daemon", "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        await asyncio.sleep(1.0)
        assert daemon_pid(daemon_home.run_dir) is None  # nothing restarted it by itself
        told = [m.message for m in editor.messages if "was stopped" in m.message]
        assert len(told) == 1, told
        items = await inline(editor, uri, 3, 4)  # the next request brings one back
        again = await status(editor)
    assert again.pid != first.pid and len(items) == 1


async def test_after_kill_9_of_the_daemon_the_next_window_gets_a_new_one(
    daemon_home: TestHome,
) -> None:
    # A daemon killed outright leaves its socket file behind, and its lock with it gone.
    async with window(daemon_home) as editor:
        first = await idle(editor)
    await kill_9_server(editor, daemon_home, first.pid)  # (its window is closed)
    sock = daemon_home.run_dir / "daemon.sock"
    assert sock.exists()  # stale: nobody listens there
    async with window(daemon_home) as editor:
        again = await idle(editor)
        uri = open_doc(editor, daemon_home.workspace / "a.py", SOURCE)
        items = await inline(editor, uri, 3, 4)
    assert again.pid != first.pid and len(items) == 1


async def test_an_editor_leaving_after_a_stop_starts_no_daemon(daemon_home: TestHome) -> None:
    async with window(daemon_home) as editor:
        await idle(editor)
        stopped = aiguilleur(daemon_home, "daemon", "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        await asyncio.sleep(0.5)  # (the shim has heard of it)
    # The editor's shutdown and exit were answered by the shim: nothing was started.
    await asyncio.sleep(1.0)
    assert daemon_pid(daemon_home.run_dir) is None
    assert "Traceback" not in daemon_home.daemon_log


async def test_windows_of_one_workspace_share_its_index(daemon_home: TestHome) -> None:
    """The second window finds the index the first built: nothing is read again."""
    pkg = daemon_home.workspace / "pkg"
    pkg.mkdir()
    (pkg / "models.py").write_text("class User:\n    def rename(self): ...\n")
    async with window(daemon_home) as first:
        deadline = time.monotonic() + PATIENCE
        while (built := (await status(first)).index) is None or built.files != 1:
            assert time.monotonic() < deadline, built
            await asyncio.sleep(0.05)
        async with window(daemon_home) as second:
            while (shared := (await status(second)).index) is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert shared.files == 1 and shared.definitions == 2
            assert shared.updated == built.updated  # the first window's refresh, not a new one
