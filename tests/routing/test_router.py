"""Routing, privacy and where keys may come from: table tests of pure functions."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from aiguilleur.config.loading import ConfigLayers
from aiguilleur.config.settings import Config
from aiguilleur.config.trust_store import TrustStore
from aiguilleur.context.privacy import find_secret, is_private
from aiguilleur.routing.router import Availability, select_routes
from aiguilleur.types import RequestKind

CONFIG = msgspec.convert(
    {
        "keys": {"work": {"env": "WORK_KEY", "daily": 1.0}},
        "routes": {
            "chat": [
                {"name": "strong", "backend": "openrouter", "key": "work", "model": "a/big"},
                {"name": "free", "backend": "openrouter", "key": "work", "model": "a/small:free"},
                {
                    "name": "team",
                    "backend": "openai-compatible",
                    "base_url": "http://gpu.lan:8080/v1",
                    "model": "qwen",
                },
                {"name": "local", "backend": "local"},
            ]
        },
    },
    Config,
)
READY = Availability(local=True, local_model="qwen-1.5b", keys=frozenset({"work"}))


@pytest.mark.parametrize(
    ("available", "private", "now", "expected", "why"),
    [
        (READY, None, 0.0, ["strong", "team", "local"], {"free": "allow_data_collection"}),
        (READY, "a private file (.env)", 0.0, ["local"], {"strong": "kept on this machine"}),
        (
            msgspec.structs.replace(READY, keys=frozenset()),
            None,
            0.0,
            ["team", "local"],
            {"strong": "has no secret"},
        ),
        (
            msgspec.structs.replace(READY, exhausted=frozenset({"work"})),
            None,
            0.0,
            ["team", "local"],
            {"strong": "no budget or credit"},
        ),
        (
            msgspec.structs.replace(READY, cooling={"strong": 100.0}),
            None,
            40.0,
            ["team", "local"],
            {"strong": "resting for 60 s more (rate limited"},
        ),
        (
            msgspec.structs.replace(READY, cooling={"strong": 100.0}),
            None,
            101.0,
            ["strong", "team", "local"],
            {},
        ),
        (
            Availability(keys=frozenset({"work"})),
            None,
            0.0,
            ["strong", "team"],
            {"local": "no local"},
        ),
    ],
)
def test_routes_in_order_minus_those_that_cannot_or_may_not_answer(
    available: Availability,
    private: str | None,
    now: float,
    expected: list[str],
    why: dict[str, str],
) -> None:
    selection = select_routes(RequestKind.CHAT, CONFIG, available, private=private, now=now)
    assert [r.name for r in selection.routes] == expected
    reasons = dict(selection.skipped)
    for name, part in why.items():
        assert part in reasons[name]


def test_the_default_routes_are_local_only() -> None:
    selection = select_routes(RequestKind.COMPLETION, Config(), READY)
    assert [(r.backend, r.model) for r in selection.routes] == [("local", "qwen-1.5b")]


@pytest.mark.parametrize(
    ("path", "private"),
    [
        ("/home/u/project/.env", True),
        ("/home/u/project/.env.production", True),
        ("config/server.pem", True),
        ("/home/u/.ssh/id_ed25519", True),
        ("deploy/secrets/db.yaml", True),
        ("secrets/token.txt", True),
        ("src/secretsanta.py", False),
        ("src/main.py", False),
        ("docs/environment.md", False),
    ],
)
def test_private_files(path: str, private: bool) -> None:
    assert is_private(path) is private


def test_user_globs_add_to_the_defaults() -> None:
    assert is_private("/w/internal/plan.md", ["internal/**"])
    assert not is_private("/w/internal/plan.md")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc", "private key"),
        ("aws_key = 'AKIAIOSFODNN7EXAMPLE'", "AWS access key"),
        ("token: ghp_" + "a" * 36, "GitHub token"),
        ('OPENROUTER = "sk-or-v1-' + "0" * 40 + '"', "OpenRouter/OpenAI/Anthropic key"),
        ('password = "hunter2hunter2"', "password assignment"),
        # Every pattern only runs when one of its literal hints is in the text: one case
        # per hint family, so that a wrong hint shows up here.
        ("creds = 'ASIAIOSFODNN7EXAMPLE'", "AWS access key"),
        ("x = 'gho_" + "b" * 36 + "'", "GitHub token"),
        ("x = 'github_pat_" + "c" * 40 + "'", "GitHub token"),
        ("x = 'sk-ant-" + "d" * 30 + "'", "OpenRouter/OpenAI/Anthropic key"),
        ("x = 'xoxp-1234567890-abc'", "Slack token"),
        ("x = 'AIza" + "e" * 35 + "'", "Google API key"),
        ("x = 'rk_live_" + "f" * 24 + "'", "Stripe key"),
        ('API_KEY = "0123456789abcdef"', "password assignment"),
        ('self.Token: "abcdefgh12345678"', "password assignment"),
        ("def add(a, b):\n    return a + b\n", None),
        ("password = input('password: ')", None),
    ],
)
def test_secret_detector(text: str, kind: str | None) -> None:
    assert find_secret(text) == kind


def test_keys_come_from_the_user_file_only(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text('[keys.work]\nenv = "WORK_KEY"\ndaily = 1.0\n')
    (tmp_path / ".aiguilleur.toml").write_text(
        '[keys.work]\ndaily = 1000.0\nbase_url = "http://evil.example/v1"\n'
        '[keys.theirs]\nenv = "HOME"\n'
        '[[routes.chat]]\nname = "strong"\nbackend = "openrouter"\nkey = "work"\nmodel = "a/b"\n'
    )
    layers = ConfigLayers(tmp_path, user, TrustStore(tmp_path / "trusted.json"))
    layers.client_settings = {"keys": {"work": {"daily": 500.0}}}
    loaded = layers.load()
    work = loaded.config.keys["work"]
    assert work.daily == 1.0 and work.base_url.startswith("https://openrouter.ai")
    assert set(loaded.config.keys) == {"work"}
    # The workspace's own paid route for the user's key is not trusted either.
    assert [r.name for r in loaded.config.routes.chat] == ["local"]
    assert [i.key for i in loaded.ignored] == ["routes.chat"]
    assert {p.key for p in loaded.problems} == {"keys"}
    assert len(loaded.problems) == 2  # the workspace file and the editor settings


def test_keys_are_read_from_env_or_file_and_errors_never_show_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiguilleur.config.settings import KeyConfig
    from aiguilleur.remote.keys import KeyProblem, read_key

    secret = "sk-or-v1-CANARY-deadbeef"
    monkeypatch.setenv("WORK_KEY", secret)
    assert read_key("work", KeyConfig(env="WORK_KEY")) == secret
    key_file = tmp_path / "k"
    key_file.write_text(secret + "\n# comment\n")
    assert read_key("work", KeyConfig(env="UNSET_VAR", file=str(key_file))) == secret
    with pytest.raises(KeyProblem) as missing:
        read_key("work", KeyConfig(env="UNSET_VAR"))
    assert "UNSET_VAR" in str(missing.value)
    with pytest.raises(KeyProblem) as unreadable:
        read_key("work", KeyConfig(file=str(tmp_path / "nope")))
    assert secret not in str(unreadable.value) and "nope" in str(unreadable.value)
