"""The suggestion after an accepted one: computed while the first is shown, answered at
once when the user accepts it, and the same as the engine would give when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.home import TestHome
from tests.support.lsp import change_doc, idle, inline, last_completion, lsp_session, open_doc

SOURCE = "import os\n\n\ndef main(argv):\n    name = os.path.basename(argv[0])\n    return \n"


def accepted(text: str, line: int, char: int, suggestion: str) -> tuple[str, int, int]:
    """The document once `suggestion` is accepted at (line, char), and the new cursor."""
    lines = text.split("\n")
    lines[line] = lines[line][:char] + suggestion + lines[line][char:]
    added = suggestion.split("\n")
    end_line = line + len(added) - 1
    end_char = (char if len(added) == 1 else 0) + len(added[-1])
    return "\n".join(lines), end_line, end_char


# Prefetches are asserted on: they run whatever else the machine does (on one thread,
# which no other program makes spin).
CONFIG = (
    '[local]\nmodel = "{model}"\nn_ctx = 2048\nadapt_to_load = false\nn_threads = 1\n'
    "[completion]\nmax_tokens = {max_tokens}\ntime_budget_ms = 600000\nprefix_tokens = 256\n"
    "suffix_tokens = 64\nextra_tokens = 0\n"
)


@pytest.fixture
def tiny_home(home: TestHome, tiny_model: Path) -> TestHome:
    home.write_config(CONFIG.format(model=tiny_model, max_tokens=8))
    return home


@pytest.fixture
def slowish_home(home: TestHome, small_model: Path) -> TestHome:
    """Slow enough per token that a request sent at once finds the prefetch running."""
    home.write_config(CONFIG.format(model=small_model, max_tokens=24))
    return home


@pytest.mark.parametrize(
    ("reading", "user"),
    [(True, "tiny_home"), (False, "slowish_home")],
    ids=["after-reading", "at-once"],
)
async def test_accepting_a_suggestion_gets_the_next_one_without_the_engine(
    reading: bool, user: str, server_mode: str, request: pytest.FixtureRequest
) -> None:
    model_home: TestHome = request.getfixturevalue(user)
    async with lsp_session(model_home) as client:
        uri = open_doc(client, model_home.workspace / "main.py", SOURCE)
        [first] = await inline(client, uri, 5, 11)
        # The engine computes the next suggestion while this one is shown; accepted at
        # once, the request waits for it rather than start again.
        if reading:
            await idle(client, lambda s: s.engine.prefetched == 1)
        change_doc(client, uri, 2, 5, 11, first)  # Tab: the editor inserts it
        text, line, char = accepted(SOURCE, 5, 11, first)
        [second] = await inline(client, uri, line, char)
        shown = await last_completion(client, uri)
        after = await idle(client)
    assert shown is not None and shown["ahead"] and shown["typed_through"]
    assert after.engine.completed == 1 and after.engine.prefetched >= 1  # not asked again
    # It is what the engine answers when asked for that text (a fresh server, no prefetch).
    model_home.write_config(model_home.config_file.read_text() + "prefetch = false\n")
    model_home.stop_daemon()  # a fresh engine, whose counters start at zero
    async with lsp_session(model_home) as client:
        uri = open_doc(client, model_home.workspace / "main.py", text)
        assert await inline(client, uri, line, char) == [second]
        assert (await idle(client)).engine.prefetched == 0
