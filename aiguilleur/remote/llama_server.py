"""The wire of llama.cpp's server (llama-server), driven natively: `/props`, `/tokenize`,
and `/completion` with a prompt of token ids, streamed.

Token ids rather than text: the prompt is the one the embedded engine builds
(backends/fim.py), token for token, so a shared server answers as the embedded engine
does, heals the cursor's last token the same way (a grammar makes the answer spell the
cut text first), and keeps the keystroke's new tokens at the end of the prompt, where its
cache (`cache_prompt`) leaves only them to evaluate. Text the user wrote is tokenized by
the server with `parse_special` off: a sentinel written in code stays text.

The key is held only in the clients' default headers: never in a message, a log line or
a result.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import httpx
import msgspec

from aiguilleur.errors import StreamFailed, Transient
from aiguilleur.remote.openai_compat import _json_or_none, raise_for_status

log = logging.getLogger(__name__)

# Texts whose tokens are remembered: the lines of the files being edited, the chunks of
# the repository block and the ring; a keystroke asks for its line only.
_TOKENIZE_MEMO = 20_000


class ServerInfo(msgspec.Struct, frozen=True):
    """What `/props` says of the server."""

    model: str
    model_path: str
    slots: int
    n_ctx: int  # per slot


class ServerTimings(msgspec.Struct, frozen=True):
    """The server's own account of one answer: `prompt_n` tokens it evaluated, `cache_n`
    it found in the slot's cache."""

    prompt_n: int = 0
    cache_n: int = 0
    prompt_ms: float = 0.0
    predicted_n: int = 0
    predicted_ms: float = 0.0


class ServerAnswer(msgspec.Struct, frozen=True):
    text: str
    timings: ServerTimings
    # Why it ended: the server's stop type ("eos", "limit", "word"), or "ours" when the
    # answer pipeline's stop rule ended it and the stream was closed.
    stop: str


def server_root(base_url: str) -> str:
    """The server's root from a route's `base_url`, with or without its `/v1`."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _timings(obj: Any) -> ServerTimings | None:
    if not isinstance(obj, dict):
        return None
    try:
        return msgspec.convert(obj, ServerTimings, strict=False)
    except msgspec.ValidationError:
        return None


def _piece(value: Any) -> bytes:
    """A token's text as `/tokenize` gives it: a string, or its bytes when they are not
    valid UTF-8 on their own."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return bytes(int(b) & 0xFF for b in value)
    return b""


class ServerTokenizer:
    """The server's vocabulary, through `/tokenize`; blocking (prompts are built in a
    worker thread), remembered per text, safe to share between threads."""

    def __init__(self, root: str, api_key: str | None, timeout: float) -> None:
        self.http = httpx.Client(
            base_url=root,
            headers=_headers(api_key),
            timeout=httpx.Timeout(timeout, connect=3.0),
        )
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, list[int]] = OrderedDict()
        self._pieces: dict[int, bytes] = {}

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"ServerTokenizer({self.http.base_url})"

    def _ask(self, body: dict[str, Any]) -> list[Any]:
        try:
            response = self.http.post("/tokenize", json=body)
        except httpx.HTTPError as error:
            raise Transient(f"llama-server /tokenize: {type(error).__name__}") from error
        data = _json_or_none(response)
        raise_for_status(response, data, "llama-server /tokenize")
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise Transient("llama-server /tokenize: no tokens in its answer")
        return tokens

    def tokenize(self, text: str) -> list[int]:
        """`text` as plain text (a sentinel in it stays text)."""
        with self._lock:
            hit = self._memo.get(text)
            if hit is not None:
                self._memo.move_to_end(text)
                return hit
        if not text:
            return []
        pairs = self._ask(
            {"content": text, "add_special": False, "parse_special": False, "with_pieces": True}
        )
        ids = [int(p["id"]) for p in pairs]
        with self._lock:
            for p in pairs:
                self._pieces[int(p["id"])] = _piece(p.get("piece"))
            self._memo[text] = ids
            while len(self._memo) > _TOKENIZE_MEMO:
                self._memo.popitem(last=False)
        return ids

    def piece(self, token: int) -> bytes:
        """The text of a token this tokenizer has returned."""
        with self._lock:
            return self._pieces.get(token, b"")

    def special(self, text: str) -> int | None:
        """The id of the special token written `text`, if the vocabulary has one."""
        ids = self._ask({"content": text, "add_special": False, "parse_special": True})
        return int(ids[0]) if len(ids) == 1 else None

    def bos(self) -> int:
        """The token the model wants first (-1: none; Qwen's wants none)."""
        ids = self._ask({"content": "", "add_special": True, "parse_special": True})
        return int(ids[0]) if ids else -1

    def close(self) -> None:
        self.http.close()


class LlamaServerClient:
    """One llama-server: its properties and answers. `first_token_s` bounds the wait for
    the server's first byte, and then between any two (a queued request on a busy server
    waits, as a dead one does)."""

    def __init__(self, base_url: str, api_key: str | None, name: str = "llama-server") -> None:
        self.name = name
        self.root = server_root(base_url)
        self.http = httpx.AsyncClient(
            base_url=self.root,
            headers=_headers(api_key),
            timeout=httpx.Timeout(30.0, connect=3.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"LlamaServerClient({self.name}, {self.root})"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def info(self) -> ServerInfo:
        where = f"{self.name} /props"
        try:
            response = await self.http.get("/props")
        except httpx.HTTPError as error:
            raise Transient(f"{where}: {type(error).__name__}") from error
        body = _json_or_none(response)
        raise_for_status(response, body, where)
        if not isinstance(body, dict):
            raise Transient(f"{where}: not a llama-server (no JSON properties)")
        settings = body.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        path = str(body.get("model_path") or "")
        alias = str(body.get("model_alias") or "")
        return ServerInfo(
            # The alias defaults to the model's path: its file name is what users know.
            model=PurePath(alias or path).name or "llama-server",
            model_path=path,
            slots=int(body.get("total_slots") or 1),
            n_ctx=int(n_ctx or 4096),
        )

    async def complete(
        self,
        body: dict[str, Any],
        first_token_s: float,
        enough: Callable[[str], bool] = lambda text: False,
    ) -> ServerAnswer:
        """`/completion`, streamed: the answer once the server ends it, or once `enough`
        says the text so far is all that will be kept (the connection is then closed,
        which stops the server's work on it)."""
        body = {**body, "stream": True, "timings_per_token": True}
        where = f"{self.name} /completion"
        parts: list[str] = []
        timings = ServerTimings()
        timeout = httpx.Timeout(first_token_s, connect=min(3.0, first_token_s))
        try:
            async with self.http.stream(
                "POST", "/completion", json=body, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_status(response, _json_or_none(response), where)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    try:
                        event = msgspec.json.decode(line[5:].strip())
                    except msgspec.DecodeError:
                        raise StreamFailed(f"{where}: a chunk is not JSON") from None
                    if not isinstance(event, dict):
                        raise StreamFailed(f"{where}: a chunk is not a JSON object")
                    if "error" in event:
                        error = event["error"]
                        message = error.get("message") if isinstance(error, dict) else error
                        raise StreamFailed(f"{where}: {message}")
                    parts.append(str(event.get("content") or ""))
                    timings = _timings(event.get("timings")) or timings
                    if event.get("stop"):
                        stop = str(event.get("stop_type") or "eos")
                        return ServerAnswer("".join(parts), timings, stop)
                    if enough("".join(parts)):
                        return ServerAnswer("".join(parts), timings, "ours")
        except (StreamFailed, Transient):
            raise
        except httpx.TimeoutException as error:
            why = "no answer" if not parts else "the answer stalled"
            raise Transient(f"{where}: {why} within {first_token_s:.1f} s") from error
        except httpx.HTTPError as error:
            if parts:
                raise StreamFailed(f"{where}: connection cut mid-answer") from error
            raise Transient(f"{where}: {type(error).__name__}") from error
        raise StreamFailed(f"{where}: the answer stopped before its end")
