"""The persistent KV cache, through the real server: after a restart, after switching
files, and after opening a file, the first suggestion does not re-evaluate the prompt."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.home import TestHome
from tests.support.lsp import idle, inline, last_completion, lsp_session, open_doc, status

# The whole file fits the prefix window, so the window starts at line 0 everywhere.
# Prefills are asserted on: they run whatever else the machine does (on one thread,
# which no other program makes spin), and answers are compared: no time budget cuts them.
CONFIG = (
    '[local]\nmodel = "{model}"\nn_ctx = 2048\nadapt_to_load = false\nn_threads = 1\n'
    "[completion]\nmax_tokens = 8\nprefix_tokens = 1200\nsuffix_tokens = 32\nextra_tokens = 0\n"
    "time_budget_ms = 600000\n"
)


def source(name: str, lines: int = 16) -> str:
    body = "".join(f"    {name}_{i} = compute({i}, '{name}')\n" for i in range(lines))
    return f"def {name}():\n{body}    return None\n"


async def suggest_at_line(
    client: Any, home: TestHome, name: str, line: int, until: Any = lambda s: True
) -> tuple[str, Any]:
    text = source(name)
    uri = open_doc(client, home.workspace / f"{name}.py", text)
    s = await idle(client, until)  # let any prefill of the opened file finish
    col = len(text.splitlines()[line])
    suggestion = await inline(client, uri, line, col)
    last = await last_completion(client, uri)
    assert last is not None
    # What the first suggestion cost the engine: its own evaluation and the prefill's.
    work = last["usage"]["evaluated_tokens"] + s.engine.prefilled_tokens
    return suggestion, {**last["usage"], "work": work}


def configure(home: TestHome, model: Any, extra: str = "") -> None:
    home.write_config(CONFIG.format(model=model) + extra)


async def test_the_first_suggestion_after_a_restart_restores_the_saved_state(
    home: TestHome, tiny_model: Any
) -> None:
    # No prefetch either: the daemon may stop before one runs.
    configure(home, tiny_model, "prefetch = false\n")
    async with lsp_session(home) as client:
        # The user read the file long enough for the opened file's state to be saved:
        # the line then typed is too short for another save on a pause, not at shutdown.
        saved = lambda s: s.engine.saved >= 1  # noqa: E731
        first, before = await suggest_at_line(client, home, "alpha", 12, saved)
    assert before["work"] > 300  # a cold start evaluates the whole prompt
    home.stop_daemon()  # the next day: the daemon idled out too

    async with lsp_session(home) as client:
        second, after = await suggest_at_line(client, home, "alpha", 12)
        s = await status(client)
    assert second == first  # the restored state predicts exactly what the fresh one did
    assert after["evaluated_tokens"] <= 3 and after["work"] <= 4
    assert s.engine.restored >= 1 and s.kv.hits_disk >= 1


async def test_without_the_disk_tier_a_restart_starts_cold(home: TestHome, tiny_model: Any) -> None:
    configure(home, tiny_model, "[cache]\nkv_disk_mb = 0\n")
    async with lsp_session(home) as client:
        _, before = await suggest_at_line(client, home, "alpha", 12)
    home.stop_daemon()
    async with lsp_session(home) as client:
        _, after = await suggest_at_line(client, home, "alpha", 12)
    assert after["work"] == before["work"] > 300


async def ask(client: Any, home: TestHome, name: str, line: int) -> Any:
    """A suggestion at the end of `line` of an open document; its usage."""
    col = len(source(name).splitlines()[line])
    uri = (home.workspace / f"{name}.py").as_uri()
    await inline(client, uri, line, col)
    last = await last_completion(client, uri)
    assert last is not None
    return last["usage"]


@pytest.mark.parametrize("store", [True, False])
async def test_coming_back_to_a_file_restores_it_from_memory(
    home: TestHome, tiny_model: Any, store: bool
) -> None:
    ram = 512 if store else 0
    configure(home, tiny_model, f"[cache]\nkv_disk_mb = 0\nkv_ram_mb = {ram}\n")
    async with lsp_session(home) as client:
        for name in ("alpha", "beta"):
            open_doc(client, home.workspace / f"{name}.py", source(name))
        await idle(client)
        await ask(client, home, "alpha", 8)
        await ask(client, home, "beta", 10)
        # Back in alpha (no didOpen: editors send none when switching buffers), one line
        # further down: with the store, only that line and the suffix are new.
        back = await ask(client, home, "alpha", 9)
        s = await status(client)
    assert back["prompt_tokens"] > 300
    if store:
        assert back["restored_tokens"] > 300
        assert back["evaluated_tokens"] < 100
        assert s.kv.hits_ram >= 1 and s.kv.disk_entries == 0
    else:
        assert back["restored_tokens"] == 0
        assert back["evaluated_tokens"] > 300


async def test_opening_a_file_prefills_it_while_the_user_reads(
    home: TestHome, tiny_model: Any
) -> None:
    configure(home, tiny_model, "[cache]\nkv_disk_mb = 0\nkv_ram_mb = 0\n")
    text = source("gamma")
    async with lsp_session(home) as client:
        uri = open_doc(client, home.workspace / "gamma.py", text)
        s = await idle(client, lambda s: s.engine.prefilled_tokens > 0)
        assert s.engine.prefilled_tokens > 300
        lines = text.splitlines()
        await inline(client, uri, len(lines) - 1, len(lines[-1]))
        last = await last_completion(client, uri)
    assert last is not None
    # Only the FIM suffix/middle tokens and the cursor line's tail were left to evaluate.
    assert last["usage"]["evaluated_tokens"] <= 40


async def test_an_unwritable_cache_dir_is_one_message_and_completions_go_on(
    home: TestHome, tiny_model: Any
) -> None:
    blocker = home.root / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    configure(home, tiny_model, f'[cache]\ndir = "{blocker / "cache"}"\n')
    async with lsp_session(home) as client:
        _, first = await suggest_at_line(client, home, "alpha", 8)
        _, again = await suggest_at_line(client, home, "beta", 8)
        s = await status(client)
        shown = [m.message for m in client.messages if "KV cache" in m.message]
    assert len(shown) == 1 and "memory only" in shown[0] and str(blocker) in shown[0]
    assert first["prompt_tokens"] > 0 and again["prompt_tokens"] > 0
    assert s.kv.disk_problem is not None and s.kv.ram_limit > 0
