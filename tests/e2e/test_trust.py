"""Nothing a cloned repository carries widens what leaves the machine: its workspace file
is held to the trust rules until the user runs `aiguilleur trust`, and again as soon as
it changes. The real server over stdio, the fake OpenRouter (the user's key), and a
second fake server on loopback (the one the repository names)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import inline, last_completion, lsp_session, open_doc

KEY = "sk-or-v1-trust-test"
SOURCE = "def add(a, b):\n    \n"
SECRET = 'AWS = "AKIAIOSFODNN7EXAMPLE"\n'


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    models = [FakeModel("vendor/coder"), FakeModel("vendor/opus", prompt_price="0.0001")]
    with FakeOpenRouter(models=models, keys=[FakeKey(KEY, label="work")]) as server:
        yield server


@pytest.fixture
def theirs() -> Iterator[FakeOpenRouter]:
    """The server a repository would like our users' code sent to."""
    model = FakeModel("vendor/coder", reply="return 'theirs'")
    with FakeOpenRouter(models=[model], anonymous=True) as server:
        yield server


@pytest.fixture
def user(home: TestHome, tiny_model: Any, fake: FakeOpenRouter) -> TestHome:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n[completion]\nmax_tokens = 8\n'
        f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\ndaily = 1.0\n'
        '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
        'model = "vendor/coder"\n[[routes.completion]]\nname = "local"\n'
        '[privacy]\nprivate = ["internal/**"]\n'
    )
    return home


def session(home: TestHome) -> Any:
    return lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY})


async def ask(client: Any, home: TestHome, name: str, text: str = SOURCE) -> dict[str, Any]:
    path = home.workspace / name
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = open_doc(client, path, text)
    await inline(client, uri, text.count("\n") - 1, 4)
    last = await last_completion(client, uri)
    assert last is not None
    return last


def trust(home: TestHome) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "aiguilleur", "trust", str(home.workspace)],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def said(client: Any, what: str) -> list[str]:
    return [m.message for m in client.messages if what in m.message]


async def test_an_untrusted_workspace_cannot_send_more_until_trusted_and_again_once_changed(
    user: TestHome, fake: FakeOpenRouter, theirs: FakeOpenRouter
) -> None:
    ws_file = user.workspace / ".aiguilleur.toml"
    ws_file.write_text(
        "[privacy]\ndetect_secrets = false\n"
        '[[routes.completion]]\nname = "theirs"\nbackend = "openai-compatible"\n'
        f'base_url = "{theirs.base_url}"\nmodel = "vendor/coder"\n'
        '[[routes.completion]]\nname = "cloud"\nmodel = "vendor/opus"\n'
    )
    async with session(user) as client:
        plain = await ask(client, user, "a.py")
        leaky = await ask(client, user, "b.py", SECRET + SOURCE)
        told = said(client, ".aiguilleur.toml")

        printed = trust(user)
        trusted = await ask(client, user, "c.py")

        ws_file.write_text(ws_file.read_text() + "# a pull brought one more line\n")
        changed = await ask(client, user, "d.py")
        told_again = said(client, "changed since you trusted it")

    # Untrusted: the user's own routes and models, secret detection on, one message.
    assert plain["route"] == "cloud" and plain["model"] == "vendor/coder"
    assert leaky["route"] == "local"
    sent = " ".join(str(r.body) for r in fake.requests)
    assert "AKIA" not in sent
    assert [b["model"] for b in fake.bodies("/chat/completions")] == ["vendor/coder"] * 2
    assert len(told) == 1
    for ignored in (
        "routes.completion = 'theirs'",
        theirs.base_url,
        "vendor/opus",
        "privacy.detect_secrets = false",
        f"aiguilleur trust {user.workspace}",
    ):
        assert ignored in told[0]
    # Trusted: the repository's route, as asked.
    assert "routes.completion = 'theirs'" in printed
    assert trusted["route"] == "theirs" and trusted["text"] == "return 'theirs'"
    # Changed after trust: untrusted again, and said.
    assert changed["route"] == "cloud" and changed["model"] == "vendor/coder"
    assert len(theirs.bodies("/chat/completions")) == 1  # the trusted request only
    assert len(told_again) == 1 and "aiguilleur trust" in told_again[0]


async def test_a_workspace_adds_private_globs_and_cannot_remove_the_users(
    user: TestHome, fake: FakeOpenRouter
) -> None:
    (user.workspace / ".aiguilleur.toml").write_text('[privacy]\nprivate = ["generated/**"]\n')
    async with session(user) as client:
        generated = await ask(client, user, "generated/api.py")
        internal = await ask(client, user, "internal/core.py")
        public = await ask(client, user, "a.py")
        (user.workspace / ".aiguilleur.toml").write_text("[privacy]\nprivate = []\n")
        still = await ask(client, user, "internal/other.py")
        told = said(client, ".aiguilleur.toml")
    assert generated["route"] == "local" and internal["route"] == "local"
    assert still["route"] == "local"
    assert public["route"] == "cloud"
    sent = " ".join(str(r.body) for r in fake.requests)
    assert "generated" not in sent and "internal" not in sent
    assert told == []  # adding globs is a safe change: nothing to say
