"""A fake OpenRouter on 127.0.0.1 that speaks the real wire format.

- `POST /api/v1/chat/completions` and `/api/v1/completions`, plain or streamed as SSE
  (chunked HTTP/1.1): `: OPENROUTER PROCESSING` and empty `: ` comments, content deltas,
  a final chunk with empty `choices` and `usage` including `cost`, then `data: [DONE]`;
  an `X-Generation-Id` header on every answer;
- `GET /api/v1/models` (prices as strings, USD per token), `GET /api/v1/key` (limit,
  limit_remaining, usage_daily/weekly/monthly), `GET /api/v1/generation?id=` (404 for the
  first calls after a generation, as the real one does for a short while);
- per-key credit limits answered with 403 `Key limit exceeded (daily limit)`, and failures
  a test can queue: 402, 429 with `Retry-After`, 5xx, a mid-stream error chunk (HTTP 200,
  `error` object, `finish_reason: "error"`), a connection cut before the usage chunk or
  mid-answer, a body that ends cleanly without an end marker, a chunk that is not JSON;
- a log of every request it received (path, headers, body).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class FakeModel:
    id: str
    prompt_price: str = "0.000001"  # USD per token, as OpenRouter writes it
    completion_price: str = "0.000002"
    request_price: str = "0"
    reply: str = "return a + b"
    context_length: int = 32768
    # When the answer depends on the prompt (what the user typed last, say).
    reply_for: Callable[[str], str] | None = None
    # How this model's tokenizer counts a prompt (default: 4 characters a token); the
    # text of a chat is its messages' contents, each with 4 tokens of its own.
    tokens: Callable[[str], int] | None = None


@dataclass
class FakeKey:
    key: str
    label: str = "test"
    limit: float | None = None  # USD; None: no limit
    usage: float = 0.0
    usage_daily: float = 0.0


@dataclass
class Failure:
    """The next matching request fails this way."""

    status: int = 0  # an HTTP error status, or 0 for a failure inside a 200 stream
    message: str = ""
    retry_after: int | None = None
    mid_stream_error: bool = False
    cut_before_usage: bool = False
    # The answer breaks off after this many pieces: the connection is shut down
    # (`cut_after`), the HTTP body ends cleanly with no finish_reason and no [DONE] (as a
    # proxy may: `end_after`), or a chunk that is not JSON follows (`garbage_after`).
    cut_after: int | None = None
    end_after: int | None = None
    garbage_after: int | None = None
    usage_before_end: bool = False  # with end_after: the usage chunk came before the end


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeOpenRouter:
    models: list[FakeModel] = field(default_factory=lambda: [FakeModel("vendor/coder")])
    keys: list[FakeKey] = field(default_factory=lambda: [FakeKey("sk-or-v1-test")])
    failures: list[Failure] = field(default_factory=list)
    generation_404s: int = 2  # /generation answers 404 this many times per id at first
    requests: list[Seen] = field(default_factory=list)
    generations: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream_delay: float = 0.0
    anonymous: bool = False  # answer without a key, as llama-server or vLLM do
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lookups: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/v1"

    def bodies(self, path_end: str) -> list[dict[str, Any]]:
        return [r.body or {} for r in self.requests if r.path.endswith(path_end)]

    def __enter__(self) -> FakeOpenRouter:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _error(
                self, status: int, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._json(status, {"error": {"code": status, "message": message}}, headers)

            def _record(self, body: dict[str, Any] | None) -> None:
                with fake._lock:
                    fake.requests.append(
                        Seen(self.command, self.path, dict(self.headers.items()), body)
                    )

            def _key(self) -> FakeKey | None:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip()
                if not token and fake.anonymous:
                    return FakeKey("", label="anonymous")
                return next((k for k in fake.keys if k.key == token), None)

            def do_GET(self) -> None:
                self._record(None)
                url = urlparse(self.path)
                if url.path == "/api/v1/models":
                    return self._json(200, {"data": [fake._model_json(m) for m in fake.models]})
                key = self._key()
                if key is None:
                    return self._error(401, "No auth credentials found")
                if url.path == "/api/v1/key":
                    remaining = None if key.limit is None else max(0.0, key.limit - key.usage)
                    data = {
                        "label": key.label,
                        "limit": key.limit,
                        "limit_remaining": remaining,
                        "limit_reset": None,
                        "usage": key.usage,
                        "usage_daily": key.usage_daily,
                        "usage_weekly": key.usage_daily,
                        "usage_monthly": key.usage_daily,
                        "is_free_tier": False,
                    }
                    return self._json(200, {"data": data})
                if url.path == "/api/v1/generation":
                    gid = parse_qs(url.query).get("id", [""])[0]
                    with fake._lock:
                        seen = fake._lookups.get(gid, 0)
                        fake._lookups[gid] = seen + 1
                        gen = fake.generations.get(gid)
                    if gen is None or seen < fake.generation_404s:
                        return self._error(404, f"Generation {gid} not found")
                    return self._json(200, {"data": gen})
                self._error(404, "Not Found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._record(None)
                    return self._error(400, "Invalid JSON")
                self._record(body)
                url = urlparse(self.path)
                if url.path not in ("/api/v1/chat/completions", "/api/v1/completions"):
                    return self._error(404, "Not Found")
                key = self._key()
                if key is None:
                    return self._error(401, "No auth credentials found")
                model = next((m for m in fake.models if m.id == body.get("model")), None)
                if model is None:
                    return self._error(400, f"{body.get('model')} is not a valid model ID")
                with fake._lock:
                    failure = fake.failures.pop(0) if fake.failures else None
                if failure is not None and failure.status:
                    headers = {}
                    if failure.retry_after is not None:
                        headers["Retry-After"] = str(failure.retry_after)
                    return self._error(failure.status, failure.message, headers)
                if key.limit is not None and key.usage >= key.limit:
                    return self._error(403, "Key limit exceeded (daily limit)")
                fake._answer(self, url.path, body, key, model, failure)

        class Server(ThreadingHTTPServer):
            # The stdlib's backlog of 5 resets connections when hundreds arrive at once
            # (the concurrency tests); a real API's front end does not.
            request_queue_size = 1024

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that goes away (a killed daemon, a pooled connection closed)
                # is not the server's error, as for a real API: no traceback for it.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- answers ----------------------------------------------------------------------------

    @staticmethod
    def _model_json(m: FakeModel) -> dict[str, Any]:
        return {
            "id": m.id,
            "name": m.id,
            "context_length": m.context_length,
            "pricing": {
                "prompt": m.prompt_price,
                "completion": m.completion_price,
                "request": m.request_price,
                "image": "0",
            },
            "top_provider": {"context_length": m.context_length, "max_completion_tokens": 4096},
        }

    def _answer(
        self,
        h: BaseHTTPRequestHandler,
        path: str,
        body: dict[str, Any],
        key: FakeKey,
        model: FakeModel,
        failure: Failure | None,
    ) -> None:
        chat = path.endswith("chat/completions")
        contents = (
            [str(m.get("content", "")) for m in body.get("messages", [])]
            if chat
            else [str(body.get("prompt", ""))]
        )
        prompt_text = " ".join(contents)
        if model.tokens is not None:
            prompt_tokens = sum(model.tokens(c) + 4 * chat for c in contents)
        else:
            prompt_tokens = max(1, len(prompt_text) // 4)
        reply = model.reply_for(prompt_text) if model.reply_for else model.reply
        words = reply.split(" ")
        limit = int(body.get("max_tokens") or len(words))
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)][:limit]
        completion_tokens = len(pieces)
        finish = "length" if len(pieces) < len(words) else "stop"  # cut by max_tokens
        if float(model.prompt_price) < 0:  # a router model: priced by where it went
            cost = 0.0005
        else:
            cost = (
                prompt_tokens * float(model.prompt_price)
                + completion_tokens * float(model.completion_price)
                + float(model.request_price)
            )
        gid = f"gen-{int(time.time())}-{next(self._ids):06d}"
        created = int(time.time())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": cost,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        with self._lock:
            key.usage += cost
            key.usage_daily += cost
            self.generations[gid] = {
                "id": gid,
                "model": model.id,
                "total_cost": cost,
                "tokens_prompt": prompt_tokens,
                "tokens_completion": completion_tokens,
                "native_tokens_cached": 0,
            }
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            text = "".join(pieces)
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            choice.update(
                {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            )
            answer = {
                "id": gid,
                "provider": "FakeProvider",
                "model": model.id,
                "object": obj,
                "created": created,
                "choices": [choice],
                "usage": usage,
            }
            return _send_json(h, answer, gid)

        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("X-Generation-Id", gid)
        h.end_headers()

        def write(text: str) -> None:
            data = text.encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        def chunk(payload: dict[str, Any]) -> None:
            base = {
                "id": gid,
                "provider": "FakeProvider",
                "model": model.id,
                "object": f"{obj}.chunk" if chat else obj,
                "created": created,
            }
            write(f"data: {json.dumps({**base, **payload})}\n\n")

        write(": OPENROUTER PROCESSING\n\n")
        write(": \n\n")
        for i, piece in enumerate(pieces):
            if self.stream_delay:
                time.sleep(self.stream_delay)
            if failure is not None and failure.mid_stream_error and i == len(pieces) // 2:
                chunk(
                    {
                        "error": {
                            "code": "server_error",
                            "message": failure.message or "Provider disconnected",
                        },
                        "choices": [
                            {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
                        ],
                    }
                )
                write("data: [DONE]\n\n")
                h.wfile.write(b"0\r\n\r\n")
                return
            if failure is not None and i == failure.cut_after:
                h.close_connection = True
                h.wfile.flush()
                h.connection.shutdown(2)
                return
            if failure is not None and i == failure.end_after:
                if failure.usage_before_end:
                    chunk({"choices": [], "usage": usage})
                h.wfile.write(b"0\r\n\r\n")  # a clean end of the body, and nothing more
                return
            if failure is not None and i == failure.garbage_after:
                write('data: {"choices": [{"delta": {"content": "x"\n\n')
                h.wfile.write(b"0\r\n\r\n")
                return
            delta = {"role": "assistant", "content": piece} if chat else None
            c = {"index": 0, "finish_reason": None}
            c.update({"delta": delta} if chat else {"text": piece})
            chunk({"choices": [c]})
        if failure is not None and failure.cut_before_usage:
            h.close_connection = True
            h.wfile.flush()
            h.connection.shutdown(2)  # the network went away before the usage chunk
            return
        last = {"index": 0, "finish_reason": finish}
        last.update({"delta": {"content": ""}} if chat else {"text": ""})
        chunk({"choices": [last]})
        chunk({"choices": [], "usage": usage})
        write("data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")


def _send_json(h: BaseHTTPRequestHandler, obj: Any, gid: str) -> None:
    body = json.dumps(obj).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.send_header("X-Generation-Id", gid)
    h.end_headers()
    h.wfile.write(body)


def compat_route(kind: str, fake: FakeOpenRouter, model: str) -> str:
    """A `[[routes.<kind>]]` entry to `fake` as an openai-compatible server (no key)."""
    return (
        f'[[routes.{kind}]]\nname = "team"\nbackend = "openai-compatible"\n'
        f'base_url = "{fake.base_url}"\nmodel = "{model}"\n'
    )
