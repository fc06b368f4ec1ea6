"""`aiguilleur pull` against a loopback Hugging Face Hub (HF_ENDPOINT), the way a user
without a model starts: download, resume after an interruption, refuse a corrupt file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiguilleur.backends.models import find_alias
from tests.support.fake_hf import FakeHub, HubFile
from tests.support.home import TestHome

ALIAS = find_alias("0.5b")
assert ALIAS is not None


def models_dir(home: TestHome) -> Path:
    return home.root / "data" / "aiguilleur" / "models"


def pull_command(home: TestHome, hub: FakeHub) -> tuple[list[str], dict[str, str]]:
    env = home.env(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_TELEMETRY="1")
    return [sys.executable, "-m", "aiguilleur", "pull", "0.5b"], env


def run_pull(home: TestHome, hub: FakeHub) -> subprocess.CompletedProcess[str]:
    cmd, env = pull_command(home, hub)
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=home.workspace, timeout=120
    )


@pytest.fixture
def model_bytes(tiny_model: Path) -> bytes:
    return tiny_model.read_bytes()


def test_pull_downloads_verifies_and_the_server_finds_the_model(
    home: TestHome, model_bytes: bytes
) -> None:
    with FakeHub([HubFile(ALIAS.repo, ALIAS.filename, model_bytes)]) as hub:
        result = run_pull(home, hub)
    assert result.returncode == 0, result.stdout + result.stderr
    target = models_dir(home) / ALIAS.filename
    assert target.read_bytes() == model_bytes
    assert f"downloaded {target}" in result.stdout
    assert any(r.method == "POST" and "paths-info" in r.path for r in hub.requests)

    doctor = home.cli("doctor")
    assert str(target) in doctor.stdout, doctor.stdout


def test_an_interrupted_pull_resumes_where_it_stopped(home: TestHome) -> None:
    blob = os.urandom(4 << 20)
    half = len(blob) // 2
    files = [HubFile(ALIAS.repo, ALIAS.filename, blob)]
    with FakeHub(files, stall_first_download_after=half) as hub:
        cmd, env = pull_command(home, hub)
        first = subprocess.Popen(
            cmd, env=env, cwd=home.workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        partial = models_dir(home) / f"{ALIAS.filename}.part"
        deadline = time.monotonic() + 60
        got = 0
        while got == 0 and time.monotonic() < deadline and first.poll() is None:
            got = partial.stat().st_size if partial.exists() else 0
            time.sleep(0.05)
        first.kill()
        first.wait()
        hub.release()
        assert got > 0, "the first pull never wrote a partial file"

        result = run_pull(home, hub)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (models_dir(home) / ALIAS.filename).read_bytes() == blob
    resumed = [r.range for r in hub.requests if r.method == "GET" and r.range]
    assert resumed, "the second pull downloaded from scratch"
    assert int(resumed[-1].removeprefix("bytes=").rstrip("-")) >= got > 0
    assert not partial.exists()


def test_a_file_that_fails_its_checksum_is_deleted(home: TestHome, model_bytes: bytes) -> None:
    bad = HubFile(ALIAS.repo, ALIAS.filename, model_bytes, advertised_sha256="0" * 64)
    with FakeHub([bad]) as hub:
        result = run_pull(home, hub)
    assert result.returncode == 1
    assert "SHA-256" in result.stdout
    assert not (models_dir(home) / ALIAS.filename).exists()
    assert not (models_dir(home) / f"{ALIAS.filename}.part").exists()


def test_an_unreachable_hub_is_a_message_not_a_traceback(home: TestHome) -> None:
    with FakeHub([]) as hub:
        endpoint = hub.endpoint
    env = home.env(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1")
    result = subprocess.run(
        [sys.executable, "-m", "aiguilleur", "pull", "0.5b"],
        capture_output=True,
        text=True,
        env=env,
        cwd=home.workspace,
        timeout=120,
    )
    assert result.returncode == 1
    assert "cannot download" in result.stdout
    assert "Traceback" not in result.stderr
