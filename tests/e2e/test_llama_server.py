"""A team's shared llama-server as a route, for real: llama.cpp's server built from the
sources in llama-cpp-python's sdist (tests/support/llama_server.py), serving the real
Qwen2.5-Coder-0.5B-Instruct (Qwen, Apache-2.0) on loopback with an API key, driven by
`aiguilleur serve` over stdio. The local route behind it is the tiny random-weight
model: an answer from it means the shared server was passed over."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.editor import Editor
from tests.support.home import TestHome
from tests.support.llama_server import (
    CuttingProxy,
    LlamaServerProcess,
    ServerUnavailable,
    free_port,
    llama_server,
    llama_server_binary,
)
from tests.support.lsp import (
    change_doc,
    idle,
    inline,
    last_completion,
    lsp_session,
    open_doc,
    run_command,
    status,
)

KEY = "team-key-5f0c1e"
FIB = "def fibonacci(n):\n    if n <= 1:\n        return n\n    return fib\n"


@pytest.fixture(scope="module")
def server_binary() -> Path:
    try:
        return llama_server_binary()
    except ServerUnavailable as error:
        if "registry" in str(error):
            pytest.skip(str(error))
        raise


@pytest.fixture(scope="module")
def shared(
    server_binary: Path, qwen_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServerProcess]:
    logs = tmp_path_factory.mktemp("llama-server")
    with llama_server(server_binary, qwen_model, slots=2, api_key=KEY, log_dir=logs) as s:
        yield s


def config(tiny_model: Path, url: str, local: bool = True, **route: Any) -> str:
    options = {"first_token_ms": 120_000, **route}
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in options.items())
    gpu = f'name = "gpu"\nbackend = "llama-server"\nbase_url = "{url}"\nkey = "team"\n{extra}'
    fallback = '[[routes.completion]]\nname = "local"\nbackend = "local"\n' if local else ""
    return (
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\n'
        '[keys.team]\nenv = "AIGUILLEUR_TEAM_KEY"\n'
        f"[[routes.completion]]\n{gpu}{fallback}"
        f"[[routes.chat]]\n{gpu}"
        f"[[routes.code_action]]\n{gpu}"
        "[completion]\nmax_tokens = 16\ntime_budget_ms = 60000\n"
        f'[chat]\ndir = "{tiny_model.parent / "chats"}"\nmax_tokens = 48\n'
    )


def session(home: TestHome, key: str = KEY) -> Any:
    return lsp_session(home, env={"AIGUILLEUR_TEAM_KEY": key})


async def server_idle(server: LlamaServerProcess) -> None:
    """Until no slot of `server` is working (an answer closed early ends there soon)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        for _ in range(600):
            slots = (await http.get(f"{server.url}/slots")).json()
            if not any(s["is_processing"] for s in slots):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the server never became idle")


async def suggest(client: Any, uri: str, line: int, col: int) -> tuple[list[str], Any]:
    shown = await inline(client, uri, line, col)
    last = await last_completion(client, uri)
    assert last is not None
    return shown, last


async def test_the_shared_server_answers_as_the_embedded_engine_and_keeps_its_cache(
    home: TestHome, tiny_model: Path, qwen_model: Path, shared: LlamaServerProcess
) -> None:
    # The embedded engine first, on the same model file: the server route builds its
    # prompt, so greedy answers agree.
    home.write_config(
        f'[local]\nmodel = "{qwen_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 16\ntime_budget_ms = 60000\n"
    )
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "fib.py", FIB)
        embedded, local = await suggest(client, uri, 3, len("    return fib"))
    assert local["route"] == "local" and embedded[0].startswith("onacci(n")
    home.stop_daemon()

    home.write_config(config(tiny_model, shared.url))
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "fib.py", FIB)
        shown, first = await suggest(client, uri, 3, len("    return fib"))
        assert first["route"] == "gpu" and "qwen2.5-coder" in first["model"]
        assert shown == embedded
        # The user types on, away from the suggestion (which a keystroke that follows it
        # would answer without asking): the server evaluates only the prompt's new end,
        # the rest is in its slot's cache.
        change_doc(client, uri, 2, 3, len("    return fib"), "(")
        await server_idle(shared)  # the user read the suggestion: its answer has ended
        _, second = await suggest(client, uri, 3, len("    return fib("))
        assert second["route"] == "gpu" and not second["typed_through"]
    u = second["usage"]
    assert u["reused_tokens"] > 15 and u["evaluated_tokens"] <= 8


async def test_healing_lets_the_model_choose_how_to_spell_the_cursors_word(
    home: TestHome, tiny_model: Path, shared: LlamaServerProcess
) -> None:
    # `    retu`: the prompt stops before the indentation's last token; the answer must
    # spell ` retu` again (a grammar), then goes on: `rn ...`, never `retu` twice.
    source = "def double(x):\n    retu\n"
    home.write_config(config(tiny_model, shared.url))
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "d.py", source)
        shown, last = await suggest(client, uri, 1, len("    retu"))
    assert last["route"] == "gpu" and shown and shown[0].startswith("rn ")


async def test_with_no_local_route_the_local_model_is_never_loaded(
    home: TestHome, tiny_model: Path, shared: LlamaServerProcess
) -> None:
    home.write_config(config(tiny_model, shared.url, local=False))
    async with session(home) as client:
        uri = open_doc(client, home.workspace / "fib.py", FIB)
        shown, last = await suggest(client, uri, 3, len("    return fib"))
        s = await status(client)
    assert last["route"] == "gpu" and shown
    assert s.model is None and s.engine is None  # no memory, no core spent on it


async def test_a_wrong_key_is_refused_told_and_never_logged(
    home: TestHome, tiny_model: Path, shared: LlamaServerProcess
) -> None:
    home.write_config(config(tiny_model, shared.url))
    wrong = "not-the-team-key-93b1"
    async with session(home, key=wrong) as client:
        uri = open_doc(client, home.workspace / "fib.py", FIB)
        await idle(client)
        _, last = await suggest(client, uri, 3, len("    return fib"))
        told = " ".join(m.message for m in client.messages)
        logged = " ".join(m.message for m in client.log_messages)
    assert last["route"] == "local"  # the next route answered
    assert "Invalid API Key" in told
    for text in (told, logged, home.serve_log, home.daemon_log):
        assert wrong not in text and KEY not in text


async def test_a_cut_answer_is_never_used_and_the_next_route_answers(
    home: TestHome, tiny_model: Path, shared: LlamaServerProcess
) -> None:
    proxy = CuttingProxy(shared.port, cut_after=200)
    try:
        home.write_config(config(tiny_model, proxy.url))
        async with session(home) as client:
            uri = open_doc(client, home.workspace / "fib.py", FIB)
            await idle(client)
            _, last = await suggest(client, uri, 3, len("    return fib"))
            told = [m.message for m in client.messages if "gpu" in m.message]
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    assert last["route"] == "local"
    assert len(told) == 1 and "trying it again in 30 s" in told[0]


async def test_a_server_that_restarts_is_passed_over_then_used_again(
    home: TestHome, tiny_model: Path, server_binary: Path, qwen_model: Path, tmp_path: Path
) -> None:
    server = LlamaServerProcess(
        server_binary, qwen_model, api_key=KEY, log_dir=tmp_path, port=free_port()
    )
    server.start()
    home.write_config(config(tiny_model, server.url, retry_s=1.0))
    try:
        async with session(home) as client:
            uri = open_doc(client, home.workspace / "fib.py", FIB)
            await idle(client)
            _, before = await suggest(client, uri, 3, len("    return fib"))
            server.kill()
            # Each request after a keystroke away from the suggestion: a new question.
            change_doc(client, uri, 2, 3, len("    return fib"), "(")
            _, down = await suggest(client, uri, 3, len("    return fib("))
            server.start()
            await asyncio.sleep(1.5)  # the route's rest (retry_s = 1) is over
            change_doc(client, uri, 3, 3, len("    return fib("), "n")
            _, back = await suggest(client, uri, 3, len("    return fib(n"))
    finally:
        server.stop()
    assert (before["route"], down["route"], back["route"]) == ("gpu", "local", "gpu")


async def test_a_busy_server_queues_and_a_slow_first_token_falls_back(
    home: TestHome, tiny_model: Path, server_binary: Path, qwen_model: Path, tmp_path: Path
) -> None:
    # One slot, taken by a teammate's long answer: llama-server queues the request
    # (it never refuses one); with no first token within the route's 2 s it falls back.
    server = LlamaServerProcess(server_binary, qwen_model, slots=1, api_key=KEY, log_dir=tmp_path)
    server.start()
    home.write_config(config(tiny_model, server.url, first_token_ms=2000))
    long = {"prompt": "def f():\n", "n_predict": 4000, "ignore_eos": True, "temperature": 0}

    def teammate_types() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut when the server stops
            httpx.post(
                f"{server.url}/completion",
                json=long,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=600,
            )

    teammate = threading.Thread(target=teammate_types, daemon=True)
    try:
        async with session(home) as client:
            uri = open_doc(client, home.workspace / "fib.py", FIB)
            await idle(client)
            teammate.start()
            await asyncio.sleep(1.0)  # the teammate's request holds the only slot
            _, last = await suggest(client, uri, 3, len("    return fib"))
            told = [m.message for m in client.messages if "gpu" in m.message]
    finally:
        server.stop()
    assert last["route"] == "local"
    assert told and "no answer within 2.0 s" in told[0]


async def test_a_chat_is_answered_by_the_shared_server(
    home: TestHome, tiny_model: Path, shared: LlamaServerProcess
) -> None:
    chat = "# Chat: numbers\n<!-- aiguilleur chat -->\n\n## You\n\nWhat is 2 + 2?\n"
    home.write_config(config(tiny_model, shared.url))
    async with session(home) as client:
        editor = Editor(client)
        uri = (home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        await run_command(client, "aiguilleur.chat", uri)
    text = editor.texts[uri]
    added = text[len(chat) :]
    heading = next(line for line in added.splitlines() if line.startswith("## aiguilleur · "))
    assert "qwen2.5-coder" in heading
    answer = added.split(heading, 1)[1].split("## You", 1)[0]
    assert answer.strip()  # an answer came, streamed into the document
    assert text.endswith("## You\n\n")
