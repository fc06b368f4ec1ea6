"""A shared server's route without a server: the healing grammar, its address, whose key
it gets, and a runtime that loads no model when no route needs one. Milliseconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from aiguilleur.backends.fim import FimPrompt
from aiguilleur.config.settings import Config
from aiguilleur.errors import BackendUnavailable, StreamFailed
from aiguilleur.remote.llama_server import ServerAnswer, ServerInfo, ServerTimings, server_root
from aiguilleur.remote.routes import RemoteRoutes
from aiguilleur.remote.shared_server import SharedServer, _Model, heal_grammar
from aiguilleur.routing.router import Availability, select_routes
from aiguilleur.routing.runtime import Runtime
from aiguilleur.types import Backend, FimContext, FimTokens, Request, RequestKind, Route

SERVER = {"name": "gpu", "backend": "llama-server", "base_url": "http://gpu.lan:8080"}


@pytest.mark.parametrize(
    ("heal", "literal"),
    [
        (b"   ", "   "),
        (b' "a\\', ' \\"a\\\\'),
        (b"\t\n", "\\t\\n"),
        (b"\x01", "\\x01"),
        ("é".encode(), "é"),
    ],
)
def test_the_healing_grammar_spells_the_cut_text_exactly(heal: bytes, literal: str) -> None:
    assert heal_grammar(heal) == f'root ::= "{literal}" [^\\x00]*'


def test_a_cut_inside_a_character_is_not_healed() -> None:
    assert heal_grammar("é".encode()[:1]) is None


@pytest.mark.parametrize(
    "url", ["http://gpu.lan:8080", "http://gpu.lan:8080/", "http://gpu.lan:8080/v1"]
)
def test_the_server_root_is_found_with_or_without_v1(url: str) -> None:
    assert server_root(url) == "http://gpu.lan:8080"


def _routes(tmp_path: Path, config: Config, told: list[str]) -> RemoteRoutes:
    return RemoteRoutes(config, tmp_path / "ledger.db", tmp_path / "prices.json", told.append)


def test_a_servers_key_is_sent_to_it_and_never_spends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_KEY", "team-secret")
    config = msgspec.convert(
        {
            "keys": {"team": {"env": "TEAM_KEY"}},
            "routes": {"completion": [{**SERVER, "key": "team"}]},
        },
        Config,
    )
    told: list[str] = []
    remote = _routes(tmp_path, config, told)
    try:
        # No OpenRouter client, price or limit polling for it: it pays for nothing.
        assert remote.spenders == {} and remote.server_keys == {"team": "team-secret"}
        assert "team" in remote.usable_keys() and told == []
    finally:
        remote.ledger.close()


def test_an_openrouter_key_is_never_sent_to_a_shared_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OR_KEY", "sk-or-v1-secret")
    paid = {"name": "cloud", "backend": "openrouter", "key": "work", "model": "a/b"}
    config = msgspec.convert(
        {
            "keys": {"work": {"env": "OR_KEY"}},
            "routes": {"completion": [{**SERVER, "key": "work"}], "chat": [paid]},
        },
        Config,
    )
    told: list[str] = []
    remote = _routes(tmp_path, config, told)
    try:
        assert remote.server_keys == {} and set(remote.spenders) == {"work"}
        assert any("never sent to another server" in m for m in told)
    finally:
        remote.ledger.close()


def test_a_llama_server_route_needs_no_model_name_but_its_key_must_exist() -> None:
    config = msgspec.convert({"routes": {"completion": [SERVER]}}, Config)
    chosen = select_routes(RequestKind.COMPLETION, config, _available())
    assert [r.backend for r in chosen.routes] == [Backend.LLAMA_SERVER]
    keyed = msgspec.convert({"routes": {"completion": [{**SERVER, "key": "nope"}]}}, Config)
    chosen = select_routes(RequestKind.COMPLETION, keyed, _available())
    assert chosen.routes == [] and "not defined in [keys]" in chosen.skipped[0][1]


def _available() -> Availability:
    return Availability(local=True)


def test_no_model_is_loaded_when_no_route_is_local_until_one_is_asked_for(
    tmp_path: Path,
) -> None:
    config = msgspec.convert(
        {
            "local": {"model": str(tmp_path / "absent.gguf")},
            "routes": {"completion": [SERVER], "code_action": [SERVER], "chat": [SERVER]},
        },
        Config,
    )
    rt = Runtime(config)
    choice = rt.start()
    assert choice.path is None and rt.deferred and rt.engine is None
    # A request routed to the local engine after all (a workspace's local route) starts
    # the load and falls back meanwhile.
    with pytest.raises(BackendUnavailable, match="loading"):
        rt.local_engine()
    assert not rt.deferred


@pytest.mark.parametrize(
    ("answered", "shown"), [(" ret", ""), (" r", ""), (" return x", "urn x"), (" x", None)]
)
def test_an_answer_is_the_text_after_the_healed_part_or_none(
    monkeypatch: pytest.MonkeyPatch, answered: str, shown: str | None
) -> None:
    # The prompt left ` ret` out; the server's answer must spell it first. Stopped before
    # it did (a limit): no suggestion. Anything else is a broken answer, never shown.
    server = SharedServer("http://gpu.lan:8080", None, "gpu")
    info = ServerInfo("qwen", "/m/qwen.gguf", 1, 4096)
    server._model = _Model(info, FimTokens("qwen2.5-coder", 1, 2, 3))
    prompt = FimPrompt([7, 1, 9, 2, 3], stable_tokens=1, prefix_end=2, heal=b" ret")
    monkeypatch.setattr(server, "_prompt", lambda *_: (prompt, prompt.tokens))

    async def reply(*_: object) -> ServerAnswer:
        return ServerAnswer(answered, ServerTimings(prompt_n=1, cache_n=4), "limit")

    monkeypatch.setattr(server.client, "complete", reply)
    request = Request(RequestKind.COMPLETION, "k", FimContext("m.py", "    ret", ""))
    route = Route("gpu", Backend.LLAMA_SERVER)
    if shown is None:
        with pytest.raises(StreamFailed):
            asyncio.run(server.complete(route, request, 5.0))
        return
    done = asyncio.run(server.complete(route, request, 5.0))
    assert done.text == shown and done.usage.evaluated_tokens == 1
