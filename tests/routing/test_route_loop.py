"""The route loop (SessionRoutes.complete and .ask) over fake backends: which route
answers, what makes it fall back, what ends it. Milliseconds, no model, no server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from aiguilleur.config.settings import Config
from aiguilleur.errors import (
    AnswerCut,
    BackendUnavailable,
    BudgetRefused,
    Cancelled,
    RateLimited,
    StreamFailed,
)
from aiguilleur.routing.route_loop import Caller, FixedPolicy, NoRoute, SessionRoutes
from aiguilleur.routing.runtime import Runtime
from aiguilleur.types import (
    Answer,
    Backend,
    ChatMessage,
    Completion,
    ContextChunk,
    FimContext,
    Request,
    RequestKind,
    Route,
    Usage,
)

TEAM = {
    "name": "team",
    "backend": "openai-compatible",
    "base_url": "http://gpu.lan:8080/v1",
    "model": "qwen",
}
LOCAL = {"name": "local", "backend": "local"}
CONFIG = msgspec.convert({"routes": {"completion": [TEAM, LOCAL], "chat": [TEAM, LOCAL]}}, Config)
REQUEST = Request(RequestKind.COMPLETION, "k", FimContext("m.py", "x = ", ""))
MESSAGES = [ChatMessage("user", "hello")]


class FakeEngine:
    """The local engine: answers, or raises what it is given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0
        self.requests: list[Request] = []

    async def complete(self, request: Request) -> Completion:
        self.calls += 1
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return Completion("1", Usage(), route="local", model="tiny")


class FakeRemote:
    """The remote routes: each call runs `behaviour(route, send)`."""

    def __init__(self, behaviour: Callable[[Route, Callable[[str], None]], str]) -> None:
        self.behaviour = behaviour
        self.failures: list[tuple[str, type[Exception]]] = []
        self.cooling: dict[str, float] = {}

    def usable_keys(self) -> frozenset[str]:
        return frozenset()

    def exhausted_keys(self, now: float) -> frozenset[str]:
        return frozenset()

    async def complete(self, route: Route, request: Request) -> Completion:
        text = self.behaviour(route, lambda _text: None)
        return Completion(text, Usage(), route=route.name, model=route.model, backend=route.backend)

    async def ask(
        self,
        route: Route,
        feature: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None],
    ) -> Answer:
        text = self.behaviour(route, on_text)
        return Answer(text, route.name, route.model, Usage(), "stop")

    def note_failure(self, route: Route, error: Exception, now: float) -> str | None:
        self.failures.append((route.name, type(error)))
        return f"route '{route.name}' failed: {error}"


def runtime(engine: Any, remote: Any) -> Runtime:
    rt = Runtime(CONFIG)
    rt.engine, rt.remote = engine, remote
    rt.model_info = None
    return rt


def session(rt: Runtime, caller: Caller | None = None) -> SessionRoutes:
    """One window's requests through `rt`, by default under CONFIG."""
    return SessionRoutes(rt, caller or FixedPolicy(CONFIG))


def answers(text: str) -> Callable[[Route, Callable[[str], None]], str]:
    return lambda route, send: text


def fails(error: Exception, sent: str = "") -> Callable[[Route, Callable[[str], None]], str]:
    def behaviour(route: Route, send: Callable[[str], None]) -> str:
        if sent:
            send(sent)
        raise error

    return behaviour


def test_the_first_route_that_answers_answers() -> None:
    engine = FakeEngine()
    rt = runtime(engine, FakeRemote(answers("team's")))
    done = asyncio.run(session(rt).complete(REQUEST))
    assert done is not None and done.text == "team's" and done.backend is Backend.OPENAI_COMPATIBLE
    assert engine.calls == 0


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("slow down", retry_after=5),
        BudgetRefused("work", "daily", 1.0, 0.99, 0.02),
        StreamFailed("cut"),
        BackendUnavailable("connection refused"),
    ],
    ids=["rate-limited", "budget", "stream-failed", "unavailable"],
)
def test_a_route_that_cannot_answer_falls_back_to_the_next(error: Exception) -> None:
    remote = FakeRemote(fails(error))
    rt = runtime(FakeEngine(), remote)
    done = asyncio.run(session(rt).complete(REQUEST))
    assert done is not None and done.route == "local"
    # Failures the router must remember (cooling, spent keys) reach the remote routes;
    # an unreachable route is only skipped this time.
    expected = [] if isinstance(error, BackendUnavailable) else [("team", type(error))]
    assert remote.failures == expected


def test_a_cancelled_request_ends_the_loop() -> None:
    engine = FakeEngine()
    rt = runtime(engine, FakeRemote(fails(Cancelled("superseded"))))
    with pytest.raises(Cancelled):
        asyncio.run(session(rt).complete(REQUEST))
    assert engine.calls == 0  # no other route is asked for an answer nobody waits for


def test_no_route_answering_is_none_for_a_completion() -> None:
    rt = runtime(FakeEngine(BackendUnavailable("no model")), FakeRemote(fails(StreamFailed("x"))))
    assert asyncio.run(session(rt).complete(REQUEST)) is None


def test_no_route_answering_a_chat_says_why_for_each_route() -> None:
    rt = runtime(None, FakeRemote(fails(StreamFailed("provider disconnected"))))
    with pytest.raises(NoRoute) as raised:
        asyncio.run(session(rt).ask(RequestKind.CHAT, "m.py", MESSAGES, 32))
    reasons = dict(raised.value.reasons)
    assert reasons["team"] == "provider disconnected"
    assert reasons["local"] == "no local model is loaded"  # skipped by the router


def test_a_chat_cut_after_text_reached_the_user_is_not_answered_again_elsewhere() -> None:
    engine = FakeEngine()
    shown: list[str] = []
    remote = FakeRemote(fails(StreamFailed("cut"), sent="Half an ans"))
    rt = runtime(engine, remote)
    with pytest.raises(AnswerCut):
        asyncio.run(session(rt).ask(RequestKind.CHAT, "m.py", MESSAGES, 32, shown.append))
    assert shown == ["Half an ans"] and engine.calls == 0


def test_a_private_file_never_reaches_a_remote_route() -> None:
    remote = FakeRemote(answers("sent!"))
    rt = runtime(FakeEngine(), remote)
    private = msgspec.structs.replace(REQUEST, context=FimContext(".env", "KEY=", ""))
    done = asyncio.run(session(rt).complete(private))
    assert done is not None and done.route == "local"


def test_two_sessions_share_one_runtime_each_under_its_own_policy() -> None:
    # Two editor windows on one engine and one set of remote routes: one window's
    # workspace keeps its files on the machine; the other's requests still go out.
    remote = FakeRemote(answers("team's"))
    engine = FakeEngine()
    rt = runtime(engine, remote)
    careful = msgspec.convert(
        {"routes": {"completion": [TEAM, LOCAL]}, "privacy": {"private": ["*.py"]}}, Config
    )
    first = SessionRoutes(rt, FixedPolicy(careful))
    second = SessionRoutes(rt, FixedPolicy(CONFIG))
    kept = asyncio.run(first.complete(REQUEST))
    sent = asyncio.run(second.complete(REQUEST))
    assert kept is not None and kept.route == "local"
    assert sent is not None and sent.route == "team"
    assert engine.calls == 1 and rt.config is CONFIG  # the runtime's own settings untouched


class Window:
    """A caller that keeps what it was told, as a session shows it."""

    def __init__(self, policy: Any = CONFIG) -> None:
        self.policy = policy
        self.told: list[str] = []

    def tell(self, message: str) -> None:
        self.told.append(message)


def test_a_failed_route_is_told_to_the_window_whose_request_it_was_only() -> None:
    def fail(route: Route, on_text: Any) -> str:
        raise StreamFailed("HTTP 502")

    rt = runtime(FakeEngine(), FakeRemote(fail))
    asking, other = Window(), Window()
    done = asyncio.run(session(rt, asking).complete(REQUEST))
    assert done is not None and done.backend is Backend.LOCAL  # fell back
    assert asking.told == ["route 'team' failed: HTTP 502"] and other.told == []


def test_a_local_routes_own_settings_apply_and_its_name_is_the_answers() -> None:
    """`[[routes.completion]] backend = "local"` with its own name, max_tokens and
    temperature: they apply as a remote route's do (they were silently ignored)."""
    mine = {"name": "mine", "backend": "local", "max_tokens": 3, "temperature": 0.4}
    config = msgspec.convert({"routes": {"completion": [mine]}}, Config)
    engine = FakeEngine()
    rt = runtime(engine, FakeRemote(answers("unused")))
    done = asyncio.run(session(rt, FixedPolicy(config)).complete(REQUEST))
    assert done is not None and done.route == "mine"
    [sent] = engine.requests
    assert (sent.params.max_tokens, sent.params.temperature) == (3, 0.4)
    # A local route that sets nothing keeps the request's own settings.
    plain = msgspec.convert({"routes": {"completion": [LOCAL]}}, Config)
    done = asyncio.run(session(rt, FixedPolicy(plain)).complete(REQUEST))
    assert done is not None and done.route == "local"
    assert engine.requests[-1].params == REQUEST.params


SERVER = {"name": "gpu", "backend": "llama-server", "base_url": "http://gpu.lan:8080"}


class Recording(FakeRemote):
    """Remote routes that keep the requests they were sent."""

    def __init__(self) -> None:
        super().__init__(answers("server's"))
        self.sent: list[Request] = []

    async def complete(self, route: Route, request: Request) -> Completion:
        self.sent.append(request)
        return await super().complete(route, request)


def test_a_shared_server_gets_the_repository_context_but_nothing_private() -> None:
    # The team's server is the user's own: it gets the block and the ring the embedded
    # engine would, except a private file's chunk and a chunk holding a secret.
    config = msgspec.convert({"routes": {"completion": [SERVER, LOCAL]}}, Config)
    chunks = (
        ContextChunk("app/store.py", "class Store:\n    def get(self, key): ...\n"),
        ContextChunk("secrets/prod.env", "DB_HOST=db\n"),
        ContextChunk("app/keys.py", 'TOKEN = "sk-or-v1-' + "0" * 40 + '"\n'),
    )
    ring = (ContextChunk("app/views.py", "def index(): ...\n"),)
    ctx = FimContext("app/main.py", "s = Store()\ns.", "", repository=chunks, extra=ring)
    remote = Recording()
    rt = runtime(FakeEngine(), remote)
    policy = msgspec.structs.replace(
        config, privacy=msgspec.structs.replace(config.privacy, private=["secrets/*"])
    )
    done = asyncio.run(session(rt, FixedPolicy(policy)).complete(Request(REQUEST.kind, "k", ctx)))
    assert done is not None and done.route == "gpu"
    [sent] = remote.sent
    assert [c.path for c in sent.context.repository] == ["app/store.py"]
    assert sent.context.extra == ring


def test_work_ahead_of_the_user_is_done_only_when_the_local_engine_answers_first() -> None:
    remote_first = msgspec.convert({"routes": {"completion": [SERVER, LOCAL]}}, Config)
    local_first = msgspec.convert({"routes": {"completion": [LOCAL, SERVER]}}, Config)
    rt = runtime(None, FakeRemote(answers("x")))  # the model not even loaded yet
    assert not session(rt, FixedPolicy(remote_first)).local_first(REQUEST)
    assert session(rt, FixedPolicy(local_first)).local_first(REQUEST)
    # A private file never goes out: the local engine is its first route after all.
    private = msgspec.structs.replace(REQUEST, context=FimContext(".env", "KEY=", ""))
    assert session(rt, FixedPolicy(remote_first)).local_first(private)
