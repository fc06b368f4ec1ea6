"""A window shares a daemon only with windows that would build the same host: the same
aiguilleur, the same config, cache and data homes, the same key values. Real shims, real
daemons, the tiny models; the OpenRouter key check goes through the fake on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiguilleur.backends.synthetic import TINY_Q8, ensure_model
from aiguilleur.daemon.identity import package_dir
from tests.support.fake_openrouter import FakeKey, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import idle, inline, last_completion, lsp_session, open_doc, status
from tests.support.waiting import PATIENCE

SERVER_MODES = ("daemon",)  # (tests/e2e/conftest.py)
SOURCE = "def add(a, b):\n    \n"
KEY_A = "sk-or-v1-CANARY-aaaa0123456789"
KEY_B = "sk-or-v1-CANARY-bbbb0123456789"


def aiguilleur(home: TestHome, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "aiguilleur", *args],
        env=home.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def daemon_home(model_home: TestHome) -> Iterator[TestHome]:
    yield model_home
    model_home.stop_daemon()


async def test_two_config_homes_get_two_daemons_each_with_its_own_model(
    daemon_home: TestHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other_model = ensure_model(tmp_path_factory.mktemp("models-q8"), TINY_Q8)
    other_home = daemon_home.root / "config-2"
    (other_home / "aiguilleur").mkdir(parents=True)
    (other_home / "aiguilleur" / "config.toml").write_text(
        f'[local]\nmodel = "{other_model}"\n[completion]\nmax_tokens = 4\n'
    )
    second_env = {"XDG_CONFIG_HOME": str(other_home)}
    async with (
        lsp_session(daemon_home) as first,
        lsp_session(daemon_home, env=second_env) as second,
    ):
        a = await idle(first)
        b = await idle(second)
        assert a.pid != b.pid
        assert a.model.name == "aiguilleur-tiny"
        assert b.model.name == "aiguilleur-tiny-q8"
        uri = open_doc(second, daemon_home.workspace / "b.py", SOURCE)
        assert await inline(second, uri, 1, 4) is not None
        # The second window's own user file is the host's: no word of a difference.
        assert not [m for m in second.messages if "differ from your user config" in m.message]
        shown = aiguilleur(daemon_home, "daemon", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"pid {a.pid}" in shown.stdout and f"pid {b.pid}" in shown.stdout
    assert str(other_home / "aiguilleur" / "config.toml") in shown.stdout
    assert shown.stdout.count("(this environment uses it)") == 1
    assert len(daemon_home.daemon_dirs()) == 2


async def test_a_window_whose_key_differs_gets_its_own_daemon_and_pays_with_its_key(
    daemon_home: TestHome, tiny_model: Path
) -> None:
    with FakeOpenRouter(keys=[FakeKey(KEY_A, label="a"), FakeKey(KEY_B, label="b")]) as fake:
        daemon_home.write_config(
            f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 8\n'
            f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\n'
            '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
            'model = "vendor/coder"\n'
        )
        async with (
            lsp_session(daemon_home, env={"AIGUILLEUR_TEST_KEY": KEY_A}) as first,
            lsp_session(daemon_home, env={"AIGUILLEUR_TEST_KEY": KEY_B}) as second,
        ):
            pids = {(await status(first)).pid, (await status(second)).pid}
            used = []
            for client, name in ((first, "a.py"), (second, "b.py")):
                uri = open_doc(client, daemon_home.workspace / name, SOURCE)
                await inline(client, uri, 1, 4)
                last = await last_completion(client, uri)
                assert last is not None and last["route"] == "cloud", last
                asked = [r for r in fake.requests if r.path.endswith("chat/completions")]
                used.append(asked[-1].headers["Authorization"])
        # A window with the same key as the first joins the first's daemon.
        async with lsp_session(daemon_home, env={"AIGUILLEUR_TEST_KEY": KEY_A}) as third:
            again = (await status(third)).pid
    assert len(pids) == 2 and again in pids
    assert used == [f"Bearer {KEY_A}", f"Bearer {KEY_B}"]
    for directory in daemon_home.daemon_dirs():  # named by a hash, the key nowhere
        for path in directory.iterdir():
            if path.is_file():
                text = path.read_bytes()
                assert KEY_A.encode() not in text and KEY_B.encode() not in text, path


def _installed_copy(root: Path) -> Path:
    """An aiguilleur installed elsewhere (as pip would, into its own directory)."""
    site = root / "site"
    shutil.copytree(
        package_dir(), site / "aiguilleur", ignore=shutil.ignore_patterns("__pycache__")
    )
    return site


def _upgrade(site: Path, version: str) -> None:
    """What `pip install -U` does to the files of a running installation."""
    init = site / "aiguilleur" / "__init__.py"
    text = init.read_text().replace('__version__ = "', f'__version__ = "{version}" or "', 1)
    init.write_text(text)


async def test_after_an_upgrade_new_windows_get_a_new_daemon_and_the_old_one_drains(
    daemon_home: TestHome,
) -> None:
    site = _installed_copy(daemon_home.root)
    env = {"PYTHONPATH": str(site)}
    server = [sys.executable, "-P", "-m", "aiguilleur", "serve"]
    async with lsp_session(daemon_home, env=env, server=server) as old_window:
        old = await idle(old_window)
        _upgrade(site, "9.9.9")
        deadline = time.monotonic() + PATIENCE
        told: list[str] = []
        while not told and time.monotonic() < deadline:
            told = [m.message for m in old_window.messages if "9.9.9 is installed" in m.message]
            await asyncio.sleep(0.1)
        assert len(told) == 1, told
        async with lsp_session(daemon_home, env=env, server=server) as new_window:
            new = await idle(new_window)
            assert new.pid != old.pid
            # The old daemon still serves its window until it closes.
            uri = open_doc(old_window, daemon_home.workspace / "a.py", SOURCE)
            assert await inline(old_window, uri, 1, 4) is not None
            assert (await status(old_window)).pid == old.pid
            shown = aiguilleur(daemon_home, "daemon", "status", **env)
            assert "superseded by aiguilleur 9.9.9" in shown.stdout, shown.stdout
        assert [m.message for m in old_window.messages if "9.9.9" in m.message] == told  # once
    deadline = time.monotonic() + PATIENCE
    while Path(f"/proc/{old.pid}").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not Path(f"/proc/{old.pid}").exists(), "the superseded daemon did not leave"
    assert os.path.exists(f"/proc/{new.pid}")  # the new one waits for its next window
    assert "daemon.drained" in daemon_home.daemon_log
    assert "Traceback" not in daemon_home.daemon_log
