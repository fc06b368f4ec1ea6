"""Which daemon is a window's own, in milliseconds (tests/e2e/test_daemon_identity.py runs
the real processes)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from aiguilleur.daemon.identity import (
    STALE_AFTER_S,
    daemon_dir,
    identity,
    installation,
    package_dir,
    prune_stale,
)

SECRET = "sk-or-v1-CANARY-0123456789abcdef"


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    (tmp_path / "xdg_runtime_dir").mkdir(mode=0o700)
    config = tmp_path / "xdg_config_home" / "aiguilleur" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\n[keys.other]\nfile = "/k"\n')
    monkeypatch.setenv("AIGUILLEUR_TEST_KEY", SECRET)
    return tmp_path


def test_the_identity_follows_the_homes_and_the_key_values(
    user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = identity()
    assert identity() == first
    assert first.key_variables == ("AIGUILLEUR_TEST_KEY",)
    monkeypatch.setenv("AIGUILLEUR_TEST_KEY", SECRET + "x")
    other_key = identity()
    monkeypatch.delenv("AIGUILLEUR_TEST_KEY")
    no_key = identity()
    monkeypatch.setenv("AIGUILLEUR_TEST_KEY", SECRET)
    monkeypatch.setenv("XDG_CACHE_HOME", str(user / "elsewhere"))
    other_cache = identity()
    digests = {first.digest, other_key.digest, no_key.digest, other_cache.digest}
    assert len(digests) == 4
    # A variable the user file does not name changes nothing.
    monkeypatch.setenv("XDG_CACHE_HOME", str(user / "xdg_cache_home"))
    monkeypatch.setenv("SOME_OTHER_KEY", "x")
    assert identity().digest == first.digest


def test_the_key_is_written_nowhere(user: Path) -> None:
    directory = daemon_dir(identity())
    for path in directory.iterdir():
        assert SECRET.encode() not in path.read_bytes()
    assert "AIGUILLEUR_TEST_KEY" in (directory / "identity.json").read_text()


def test_a_change_of_the_code_on_disk_is_another_installation(tmp_path: Path) -> None:
    copy = tmp_path / "aiguilleur"
    shutil.copytree(package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = installation(copy)
    init = copy / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9" or "'))
    after = installation(copy)
    assert after.version == "9.9.9" and after.code != before.code
    assert installation(copy) == after


def test_directories_of_daemons_long_gone_are_removed(user: Path) -> None:
    mine = daemon_dir(identity())
    old = mine.parent / "0123456789ab"
    recent = mine.parent / "ba9876543210"
    for directory in (old, recent):
        directory.mkdir()
        (directory / "identity.json").write_text("{}")
        (directory / "daemon.log").write_text("...")
    long_ago = time.time() - STALE_AFTER_S - 60
    for directory in (old, mine):
        for path in directory.iterdir():
            os.utime(path, (long_ago, long_ago))
    assert prune_stale(keep=mine) == [old]
    assert not old.exists() and recent.exists() and mine.exists()
