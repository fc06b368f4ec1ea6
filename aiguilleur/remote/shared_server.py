"""A llama-server route: completions with the embedded engine's own prompt, healing and
stop rules, answered by a server the user's team shares; chats through its OpenAI-style
`/v1/chat/completions`.

What the server runs is learned from it on first use (its model, slots, context per
slot, FIM tokens, vocabulary), and again when its model changes (it restarted with
another). Nothing here costs money: a shared server bills no one, so no budget applies;
its key only says who may use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from aiguilleur.backends.answer import stop_point
from aiguilleur.backends.fim import FimPrompt, TokenCounter, fitted_prompt, resolve_fim_tokens
from aiguilleur.errors import BackendUnavailable, StreamFailed, Transient
from aiguilleur.remote.llama_server import (
    LlamaServerClient,
    ServerAnswer,
    ServerInfo,
    ServerTokenizer,
)
from aiguilleur.remote.openai_compat import OpenAICompatClient, WireResult
from aiguilleur.types import (
    Backend,
    ChatMessage,
    Completion,
    FimTokens,
    Request,
    Route,
    Usage,
)

log = logging.getLogger(__name__)

# Tokens beyond `max_tokens` for the answer to spell the healed text again first.
_HEAL_TOKENS = 2
_TOKENIZE_TIMEOUT_S = 10.0


def heal_grammar(heal: bytes) -> str | None:
    """A GBNF grammar whose answers start by spelling `heal` (what the prompt left out of
    the cursor line), then go on freely: llama-server's way to token healing. None when
    `heal` is not whole text (a cut inside a character cannot be written as a literal)."""
    try:
        text = heal.decode("utf-8")
    except UnicodeDecodeError:
        return None
    literal = "".join(_gbnf_char(c) for c in text)
    return f'root ::= "{literal}" [^\\x00]*'


def _gbnf_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\x{ord(c):02x}"
    return c


class _Model(msgspec.Struct, frozen=True):
    """What the server runs, as learned from it."""

    info: ServerInfo
    fim: FimTokens


class SharedServer:
    """One llama-server, for every route that names it."""

    def __init__(self, base_url: str, api_key: str | None, name: str) -> None:
        self.client = LlamaServerClient(base_url, api_key, name)
        self.tokenizer = ServerTokenizer(self.client.root, api_key, _TOKENIZE_TIMEOUT_S)
        self.count = TokenCounter(self.tokenizer.tokenize)
        self._chat = OpenAICompatClient(self.client.root + "/v1", api_key, name=name)
        self._model: _Model | None = None
        self._learning = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SharedServer({self.client.root})"

    async def model(self) -> _Model:
        """What the server runs: learned once, and again after it failed (it may have
        restarted with another model)."""
        async with self._learning:
            if self._model is not None:
                return self._model
            info = await self.client.info()
            fim = await asyncio.to_thread(self._fim_tokens)
            if fim is None:
                raise BackendUnavailable(
                    f"the model of {self.client.root} ({info.model}) has no "
                    "fill-in-the-middle tokens: serve a code model (e.g. Qwen2.5-Coder)"
                )
            self._model = _Model(info, fim)
            log.info(
                "server.learned root=%s model=%s slots=%d n_ctx=%d fim=%s",
                self.client.root,
                info.model,
                info.slots,
                info.n_ctx,
                fim.source,
            )
            return self._model

    def _fim_tokens(self) -> FimTokens | None:
        """The FIM tokens of the known families whose sentinels are special tokens of the
        server's vocabulary (its GGUF metadata is not exposed). The server stops at its
        model's end-of-generation tokens by itself: no end ids are needed here."""
        tok = self.tokenizer
        return resolve_fim_tokens((-1,) * 6, tok.bos(), (), tok.special)

    def forget(self) -> None:
        """The server failed: learn what it runs again before the next request."""
        self._model = None

    async def complete(self, route: Route, request: Request, first_token_s: float) -> Completion:
        started = time.perf_counter()
        try:
            return await self._complete(route, request, first_token_s, started)
        except (Transient, StreamFailed):
            self.forget()
            raise

    async def _complete(
        self, route: Route, request: Request, first_token_s: float, started: float
    ) -> Completion:
        m = await self.model()
        prompt, tokens = await asyncio.to_thread(self._prompt, request, m, True)
        grammar = heal_grammar(prompt.heal) if prompt.heal else None
        if prompt.heal and grammar is None:  # a cut inside a character: the line sent whole
            prompt, tokens = await asyncio.to_thread(self._prompt, request, m, False)
        heal = prompt.heal.decode("utf-8") if grammar is not None else ""
        gen = request.params
        body: dict[str, object] = {
            "prompt": tokens,
            "n_predict": gen.max_tokens + (_HEAL_TOKENS if heal else 0),
            "temperature": gen.temperature,
            "cache_prompt": True,
            # The server chooses the slot: an idle one whose cache shares most of the
            # prompt, else one it restores the prompt's longest cached prefix into from
            # its RAM cache (`--cache-ram`). A developer's keystrokes find their own
            # cache with no coordination between developers' daemons. Pinning a session
            # to its slot made a shared server's keystrokes 5.6x as slow (the server
            # empties idle slots into its RAM cache, and restores from there only for a
            # request it places itself: README, design notes).
            "id_slot": -1,
            "t_max_predict_ms": gen.time_budget_ms,
            "return_tokens": False,
        }
        if grammar is not None:
            body["grammar"] = grammar

        def enough(text: str) -> bool:
            # The embedded engine's stop rule, on the stream: tokens past it are cut anyway.
            answer = text[len(heal) :] if text.startswith(heal) else ""
            cut = stop_point(answer, single_line=gen.single_line, min_indent=gen.min_indent)
            return cut is not None

        reply: ServerAnswer = await self.client.complete(body, first_token_s, enough)
        if heal.startswith(reply.text):  # stopped before it spelled the cut text: nothing
            reply = msgspec.structs.replace(reply, text=heal)
        elif not reply.text.startswith(heal):
            raise StreamFailed(f"{self.client.name}: the answer does not spell the healed text")
        t = reply.timings
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=t.prompt_n,
            reused_tokens=t.cache_n,
            completion_tokens=t.predicted_n,
            prompt_ms=t.prompt_ms,
            generation_ms=(time.perf_counter() - started) * 1000,
        )
        return Completion(
            reply.text[len(heal) :],
            usage,
            route=route.name,
            model=m.info.model,
            backend=Backend.LLAMA_SERVER,
        )

    def _prompt(self, request: Request, m: _Model, heal: bool) -> tuple[FimPrompt, list[int]]:
        """The embedded engine's prompt for `request`, in the server's tokens, fitted to
        its slot's context; with `heal`, the cursor line's last token left to the answer."""
        tok = self.tokenizer
        return fitted_prompt(
            request,
            m.fim,
            m.info.n_ctx,
            tok.tokenize,
            self.count,
            token_text=tok.piece if heal else None,
            tokenize_chunk=tok.tokenize,
        )

    async def chat(
        self,
        route: Route,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        first_token_s: float,
        on_text: Callable[[str], None] | None,
    ) -> WireResult:
        try:
            return await self._chat.chat(
                route.model or "default",
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                on_text=on_text,
                timeout=first_token_s,
            )
        except Transient:
            self.forget()
            raise

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._chat.aclose()
        await asyncio.to_thread(self.tokenizer.close)
