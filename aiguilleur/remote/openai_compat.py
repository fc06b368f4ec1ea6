"""The OpenAI-style wire: `/chat/completions` and `/completions`, plain or streamed (SSE).

Shared by the OpenRouter backend and by any OpenAI-compatible server (llama-server,
vLLM, Ollama, LM Studio). One pooled `httpx.AsyncClient` per key, explicit timeouts, and
HTTP failures mapped onto the typed errors of `aiguilleur.errors`. The key is held only in
the client's default headers: it is never part of a message, a log line or a result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
from httpx_sse import aconnect_sse

from aiguilleur.errors import (
    OutOfCredit,
    RateLimited,
    Rejected,
    StreamFailed,
    Transient,
)
from aiguilleur.types import ChatMessage

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)


class WireUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None  # OpenRouter's `usage.cost`; None when not reported


class WireResult(msgspec.Struct, frozen=True):
    text: str
    generation_id: str
    model_used: str
    usage: WireUsage
    finish_reason: str = ""


def _usage(obj: Any) -> WireUsage:
    if not isinstance(obj, dict):
        return WireUsage()
    details = obj.get("prompt_tokens_details") or {}
    cost = obj.get("cost")
    return WireUsage(
        prompt_tokens=int(obj.get("prompt_tokens") or 0),
        completion_tokens=int(obj.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )


def _retry_after(response: httpx.Response, body: Any) -> float | None:
    header = response.headers.get("Retry-After")
    if header:
        try:
            return float(header)
        except ValueError:
            return None
    if isinstance(body, dict):
        error = body.get("error")
        meta = error.get("metadata") if isinstance(error, dict) else None
        value = meta.get("retry_after_seconds") if isinstance(meta, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def _error_message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return fallback


def raise_for_status(response: httpx.Response, body: Any, where: str) -> None:
    """Map an HTTP error onto the backend error the router acts on."""
    status = response.status_code
    if status < 400:
        return
    message = f"{where}: HTTP {status}: {_error_message(body, response.reason_phrase)}"
    if status == 429:
        raise RateLimited(message, _retry_after(response, body))
    if status == 402 or (status == 403 and "limit" in message.lower()):
        raise OutOfCredit(message)
    if status in (408, 425, 500, 502, 503, 504, 520, 522, 524, 529):
        raise Transient(message)
    raise Rejected(message)


class OpenAICompatClient:
    """A client for one base URL and one key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        name: str = "openai-compatible",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        default = dict(headers or {})
        if api_key:
            default["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=default,
            timeout=timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"OpenAICompatClient({self.name}, {self.base_url})"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            response = await self.http.get(path, params=params)
        except httpx.TimeoutException as error:
            raise Transient(f"{self.name} {path}: timed out") from error
        except httpx.HTTPError as error:
            raise Transient(f"{self.name} {path}: {type(error).__name__}") from error
        body = _json_or_none(response)
        raise_for_status(response, body, f"{self.name} {path}")
        return body

    async def chat(
        self,
        model: str,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
        on_text: Callable[[str], None] | None = None,
        timeout: float | None = None,
        on_generation: Callable[[str], None] | None = None,
    ) -> WireResult:
        """`timeout`: the longest wait for any byte of the answer, the first included
        (default: the client's). `on_generation` learns the answer's generation id as
        soon as the server names it (before the answer ends)."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [msgspec.to_builtins(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            **(extra or {}),
        }
        return await self._stream(
            "/chat/completions",
            body,
            chat=True,
            on_text=on_text,
            timeout=timeout,
            on_generation=on_generation,
        )

    async def complete(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        on_text: Callable[[str], None] | None = None,
        timeout: float | None = None,
        on_generation: Callable[[str], None] | None = None,
    ) -> WireResult:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            **({"stop": stop} if stop else {}),
            **(extra or {}),
        }
        return await self._stream(
            "/completions",
            body,
            chat=False,
            on_text=on_text,
            timeout=timeout,
            on_generation=on_generation,
        )

    async def _stream(
        self,
        path: str,
        body: dict[str, Any],
        *,
        chat: bool,
        on_text: Callable[[str], None] | None,
        timeout: float | None = None,
        on_generation: Callable[[str], None] | None = None,
    ) -> WireResult:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        wait = httpx.Timeout(timeout, connect=min(5.0, timeout)) if timeout is not None else None
        options: dict[str, Any] = {"timeout": wait} if wait is not None else {}
        where = f"{self.name} {body.get('model')}"
        parts: list[str] = []
        generation_id = ""
        model_used = str(body.get("model"))
        usage = WireUsage()
        finish = ""
        # An answer is whole only once its end is seen: `[DONE]` or a finish_reason. A
        # stream that just stops (a proxy or a network that drops the connection cleanly)
        # would otherwise pass for a complete answer.
        ended = False

        def broken(why: str) -> StreamFailed:
            return StreamFailed(
                f"{where}: {why}",
                generation_id,
                "".join(parts),
                usage.cost_usd,
                usage.prompt_tokens,
                usage.completion_tokens,
            )

        try:
            async with aconnect_sse(self.http, "POST", path, json=body, **options) as source:
                response = source.response
                generation_id = response.headers.get("X-Generation-Id", "")
                if generation_id and on_generation is not None:
                    on_generation(generation_id)
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_status(response, _json_or_none(response), where)
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        ended = True
                        break
                    if not event.data:
                        continue
                    try:
                        chunk = msgspec.json.decode(event.data)
                    except msgspec.DecodeError:
                        raise broken("a chunk of the answer is not JSON") from None
                    if not isinstance(chunk, dict):
                        raise broken("a chunk of the answer is not a JSON object")
                    if not generation_id and chunk.get("id"):
                        generation_id = str(chunk["id"])
                        if on_generation is not None:
                            on_generation(generation_id)
                    model_used = str(chunk.get("model") or model_used)
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    if chunk.get("error"):
                        raise broken(_error_message(chunk, "error in the stream"))
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        if chat:
                            delta = choice.get("delta") or {}
                            text = delta.get("content") if isinstance(delta, dict) else None
                        else:
                            text = choice.get("text")
                        if text:
                            parts.append(str(text))
                            if on_text is not None:
                                on_text(str(text))
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
                            if finish == "error":
                                raise broken("the provider ended the answer with an error")
                            ended = True
        except (StreamFailed, RateLimited, OutOfCredit, Rejected, Transient):
            raise
        except httpx.HTTPError as error:
            if ended:
                # The whole answer came; only the usage chunk or `[DONE]` was lost: what
                # it cost is asked afterwards (the generation endpoint).
                log.info("stream.cut_after_end where=%s error=%s", where, type(error).__name__)
            elif parts or generation_id:
                cut = "timed out" if isinstance(error, httpx.TimeoutException) else "cut"
                raise broken(f"connection {cut} mid-answer ({type(error).__name__})") from error
            elif isinstance(error, httpx.TimeoutException):
                raise Transient(f"{where}: timed out") from error
            else:
                raise Transient(f"{where}: {type(error).__name__}") from error
        if not ended:
            raise broken("the answer stopped before its end (no [DONE], no finish_reason)")
        return WireResult("".join(parts), generation_id, model_used, usage, finish)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
