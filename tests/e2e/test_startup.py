"""A server starts the way it should, however the editor's first messages interleave: one
model load, through the AMX guard, and an answer to the first completion.

Editors send their settings right behind `initialized`, while the model loads; a
reconfiguration that raced the first start once loaded the model twice, side by side,
and the second load missed the guard and died with SIGILL on AMX CPUs. The model here is
quantized, so that llama.cpp's AMX kernels would take it where the CPU has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from aiguilleur.backends.llama_model import amx_build
from aiguilleur.backends.synthetic import TINY_Q8, ensure_model
from tests.support.home import TestHome
from tests.support.lsp import inline, lsp_session, open_doc, status

STARTS = 5


@pytest.fixture(scope="module")
def quantized_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model(tmp_path_factory.mktemp("models-q8"), TINY_Q8)


def _config(model: Path) -> str:
    return (
        f'[local]\nmodel = "{model}"\nn_ctx = 1024\n'
        "[completion]\nmax_tokens = 4\ntime_budget_ms = 600000\n"
    )


async def _start_with_settings(home: TestHome, settings: dict[str, Any]) -> Any:
    """One window: settings sent at once after `initialized`, a file, a completion; the
    server's status after it answered."""
    async with lsp_session(home) as client:
        client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings))
        uri = open_doc(client, home.workspace / "a.py", "def add(a, b):\n    return \n")
        assert isinstance(await inline(client, uri, 1, 11), list)
        seen = await status(client)
        server = client._server
    if server is not None and home.mode == "standalone":
        assert await server.wait() == 0  # (-4 was the SIGILL)
    home.stop_daemon()
    return seen


async def test_settings_during_the_load_leave_one_model_loaded_once(
    home: TestHome, quantized_model: Path
) -> None:
    home.write_config(_config(quantized_model))
    for _ in range(STARTS):
        seen = await _start_with_settings(home, {"completion": {"max_tokens": 6}})
        assert seen.models.loaded == 1
        assert seen.models.in_memory == 1
        assert seen.models.amx_guard == amx_build()


@pytest.mark.server_modes("standalone")
async def test_new_engine_settings_during_the_load_replace_the_model_one_after_the_other(
    home: TestHome, quantized_model: Path
) -> None:
    """A window whose own settings change the engine's: the model loads again with them,
    after the first load, never beside it."""
    home.write_config(_config(quantized_model))
    for _ in range(2):
        seen = await _start_with_settings(home, {"local": {"n_ctx": 768}})
        assert seen.model.n_ctx == 768
        assert seen.models.loaded == 2
        assert seen.models.in_memory == 1
        assert seen.models.amx_guard == amx_build()
