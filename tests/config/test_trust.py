"""The trust rules as a table: each setting a workspace file can carry, untrusted and
trusted, applied or ignored. No subprocess: the layers are loaded in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aiguilleur.config.loading import ConfigLayers, LoadedConfig
from aiguilleur.config.settings import Config
from aiguilleur.config.trust import TrustState
from aiguilleur.config.trust_store import TrustStore

USER = """
[keys.work]
env = "WORK_KEY"
daily = 1.0
[[routes.completion]]
name = "local"
[[routes.completion]]
name = "cloud"
backend = "openrouter"
key = "work"
model = "vendor/coder"
max_tokens = 32
[[routes.chat]]
name = "strong"
backend = "openrouter"
key = "work"
model = "vendor/chat"
[privacy]
private = ["internal/**"]
"""

Check = Callable[[Config], bool]


def names(routes: list[object]) -> list[str]:
    return [getattr(r, "name", "") for r in routes]


# (id, workspace file, "the workspace's value is in effect", untrusted, trusted)
TABLE: list[tuple[str, str, Check, bool, bool]] = [
    # Lowering a window or a token count: always.
    (
        "lower max_tokens",
        "[completion]\nmax_tokens = 16\n",
        lambda c: c.completion.max_tokens == 16,
        True,
        True,
    ),
    (
        "raise max_tokens",
        "[completion]\nmax_tokens = 512\n",
        lambda c: c.completion.max_tokens == 512,
        False,
        True,
    ),
    (
        "raise prefix window",
        "[completion]\nprefix_tokens = 8192\n",
        lambda c: c.completion.prefix_tokens == 8192,
        False,
        True,
    ),
    (
        "lower suffix window",
        "[completion]\nsuffix_tokens = 32\n",
        lambda c: c.completion.suffix_tokens == 32,
        True,
        True,
    ),
    (
        "turn prefetching off",
        "[completion]\nprefetch = false\n",
        lambda c: c.completion.prefetch is False,
        True,
        True,
    ),
    (
        "raise temperature",
        "[completion]\ntemperature = 0.9\n",
        lambda c: c.completion.temperature == 0.9,
        False,
        True,
    ),
    (
        "lower action tokens",
        "[actions]\nmax_tokens = 100\n",
        lambda c: c.actions.max_tokens == 100,
        True,
        True,
    ),
    (
        "raise action tokens",
        "[actions]\nmax_tokens = 5000\n",
        lambda c: c.actions.max_tokens == 5000,
        False,
        True,
    ),
    (
        "raise action context",
        "[actions]\ncontext_lines = 500\n",
        lambda c: c.actions.context_lines == 500,
        False,
        True,
    ),
    (
        "lower chat tokens",
        "[chat]\nmax_tokens = 256\n",
        lambda c: c.chat.max_tokens == 256,
        True,
        True,
    ),
    # Privacy: more is always fine, less needs trust, and globs only add up.
    (
        "detection off",
        "[privacy]\ndetect_secrets = false\n",
        lambda c: not c.privacy.detect_secrets,
        False,
        True,
    ),
    (
        "add private globs",
        '[privacy]\nprivate = ["gen/**"]\n',
        lambda c: c.privacy.private == ["internal/**", "gen/**"],
        True,
        True,
    ),
    (
        "drop private globs",
        "[privacy]\nprivate = []\n",
        lambda c: c.privacy.private == [],
        False,
        False,
    ),
    # Routes: picking the user's own, in an order that sends no more, is fine.
    (
        "local only",
        '[[routes.completion]]\nname = "local"\n',
        lambda c: names(c.routes.completion) == ["local"],
        True,
        True,
    ),
    (
        "a local route of its own",
        '[[routes.completion]]\nname = "mine"\nbackend = "local"\n',
        lambda c: names(c.routes.completion) == ["mine"],
        True,
        True,
    ),
    (
        "pick the user's cloud with fewer tokens",
        '[[routes.completion]]\nname = "local"\n[[routes.completion]]\nname = "cloud"\n'
        "max_tokens = 8\n",
        lambda c: (
            [(r.name, r.max_tokens, r.backend) for r in c.routes.completion]
            == [("local", None, "local"), ("cloud", 8, "openrouter")]
        ),
        True,
        True,
    ),
    (
        "a server of its own",
        '[[routes.completion]]\nname = "evil"\nbackend = "openai-compatible"\n'
        'base_url = "http://evil.example/v1"\nmodel = "m"\n',
        lambda c: names(c.routes.completion) == ["evil"],
        False,
        True,
    ),
    (
        "an openrouter route of its own on the user's key",
        '[[routes.completion]]\nname = "theirs"\nbackend = "openrouter"\nkey = "work"\n'
        'model = "vendor/opus"\n',
        lambda c: names(c.routes.completion) == ["theirs"],
        False,
        True,
    ),
    (
        "a paid model on the user's route",
        '[[routes.chat]]\nname = "strong"\nmodel = "vendor/opus"\n',
        lambda c: c.routes.chat[0].model == "vendor/opus",
        False,
        True,
    ),
    (
        "the user's remote route first",
        '[[routes.completion]]\nname = "cloud"\n[[routes.completion]]\nname = "local"\n',
        lambda c: names(c.routes.completion) == ["cloud", "local"],
        False,
        True,
    ),
    (
        "the user's remote route without the local one before it",
        '[[routes.completion]]\nname = "cloud"\n',
        lambda c: names(c.routes.completion) == ["cloud"],
        False,
        True,
    ),
    (
        "more tokens on the user's route",
        '[[routes.completion]]\nname = "local"\n[[routes.completion]]\nname = "cloud"\n'
        "max_tokens = 999\n",
        lambda c: c.routes.completion[-1].max_tokens == 999,
        False,
        True,
    ),
    (
        "data collection on the user's route",
        '[[routes.chat]]\nname = "strong"\nallow_data_collection = true\n',
        lambda c: c.routes.chat[0].allow_data_collection,
        False,
        True,
    ),
    (
        "a price cap on the user's route",
        '[[routes.chat]]\nname = "strong"\nmax_price = 0.5\n',
        lambda c: c.routes.chat[0].max_price == 0.5,
        False,
        True,
    ),
    # Which model is loaded, where chats go, what prompts say: trust.
    (
        "local model",
        '[local]\nmodel = "/tmp/theirs.gguf"\n',
        lambda c: c.local.model == "/tmp/theirs.gguf",
        False,
        True,
    ),
    ("context size", "[local]\nn_ctx = 999999\n", lambda c: c.local.n_ctx == 999999, False, True),
    ("chat dir", '[chat]\ndir = "/tmp/chats"\n', lambda c: c.chat.dir == "/tmp/chats", False, True),
    (
        "a prompt",
        '[prompts.document]\nuser = "Say {code}"\n',
        lambda c: "document" in c.prompts,
        False,
        True,
    ),
    # Keys, budgets and where we write: the user file alone, trusted or not.
    (
        "raise a budget",
        "[keys.work]\ndaily = 1000.0\n",
        lambda c: c.keys["work"].daily == 1000.0,
        False,
        False,
    ),
    (
        "a key of its own",
        '[keys.theirs]\nenv = "HOME"\n',
        lambda c: "theirs" in c.keys,
        False,
        False,
    ),
    ("cache dir", '[cache]\ndir = "/tmp/c"\n', lambda c: c.cache.dir == "/tmp/c", False, False),
    (
        "models dir",
        '[local]\nmodels_dir = "/tmp/m"\n',
        lambda c: c.local.models_dir == "/tmp/m",
        False,
        False,
    ),
]


def load(tmp_path: Path, workspace: str, trusted: bool) -> LoadedConfig:
    user = tmp_path / "user.toml"
    user.write_text(USER)
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / ".aiguilleur.toml").write_text(workspace)
    store = TrustStore(tmp_path / "trusted.json")
    if trusted:
        store.trust(ws / ".aiguilleur.toml", workspace.encode())
    return ConfigLayers(ws, user, store).load()


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize(
    ("workspace", "applied", "untrusted", "with_trust"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_what_a_workspace_file_may_change(
    tmp_path: Path,
    workspace: str,
    applied: Check,
    untrusted: bool,
    with_trust: bool,
    trusted: bool,
) -> None:
    loaded = load(tmp_path, workspace, trusted)
    expected = with_trust if trusted else untrusted
    assert applied(loaded.config) is expected
    assert loaded.trust is (TrustState.TRUSTED if trusted else TrustState.UNTRUSTED)
    said = bool(loaded.ignored) or any(
        p.source.endswith(".aiguilleur.toml") for p in loaded.problems
    )
    assert said is (not expected and workspace != "[privacy]\nprivate = []\n")


def test_what_was_ignored_is_named_with_the_command_that_trusts_it(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        '[privacy]\ndetect_secrets = false\n[[routes.completion]]\nname = "evil"\n'
        'backend = "openai-compatible"\nbase_url = "http://evil.example/v1"\nmodel = "m"\n',
        trusted=False,
    )
    message = loaded.untrusted_message()
    assert message is not None
    assert str(tmp_path / "ws" / ".aiguilleur.toml") in message
    assert "privacy.detect_secrets = false" in message
    assert "routes.completion = 'evil'" in message and "http://evil.example/v1" in message
    assert message.endswith(f"aiguilleur trust {tmp_path / 'ws'}")


def test_a_changed_file_is_untrusted_again(tmp_path: Path) -> None:
    wants = "[completion]\nmax_tokens = 512\n"
    assert load(tmp_path, wants, trusted=True).config.completion.max_tokens == 512
    (tmp_path / "ws" / ".aiguilleur.toml").write_text(wants + "# one more line\n")
    again = ConfigLayers(
        tmp_path / "ws", tmp_path / "user.toml", TrustStore(tmp_path / "trusted.json")
    )
    loaded = again.load()
    assert loaded.trust is TrustState.CHANGED
    assert loaded.config.completion.max_tokens == 64
    message = loaded.untrusted_message()
    assert message is not None and "changed since you trusted it" in message


def test_a_corrupt_trust_file_trusts_nothing(tmp_path: Path) -> None:
    wants = "[completion]\nmax_tokens = 512\n"
    load(tmp_path, wants, trusted=True)
    (tmp_path / "trusted.json").write_bytes(b"\x00{not json")
    loaded = ConfigLayers(
        tmp_path / "ws", tmp_path / "user.toml", TrustStore(tmp_path / "trusted.json")
    ).load()
    assert loaded.trust is TrustState.UNTRUSTED and loaded.config.completion.max_tokens == 64


def test_trust_is_listed_and_revoked(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    store.trust(a, b"x")
    store.trust(b, b"y")
    assert [Path(e.path).name for e in store.entries()] == ["a.toml", "b.toml"]
    assert store.revoke(a) and not store.revoke(a)
    assert [Path(e.path).name for e in store.entries()] == ["b.toml"]
