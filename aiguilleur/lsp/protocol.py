"""pygls' protocol, made to answer every request exactly once.

Stock pygls drops a request whose params do not match the LSP types (and pops up an
"Error in server" message), and ignores requests after `shutdown` without answering.
Both leave the editor waiting forever; here each gets a JSON-RPC error instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)

# The id of the request being handled: tasks a handler starts inherit it, so a long
# command can register itself for `$/cancelRequest` (pygls cancels only the future of
# `workspace/executeCommand`, not the command's own coroutine).
REQUEST_ID: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "REQUEST_ID", default=None
)


class _Unreadable:
    """A request whose params could not be decoded: answered with the decoding error."""

    def __init__(self, msg_id: int | str, method: str, error: JsonRpcException) -> None:
        self.id = msg_id
        self.method = method
        self.error = error


class _EditorWriter:
    """pygls' writer, quiet once the editor has closed its end: an editor that quits
    without waiting for our last answers is normal, not a server error."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gone = False

    def write(self, data: bytes) -> Any:
        if self.gone:
            return None
        try:
            return self.inner.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
            log.info("editor.gone: it closed our stdout; answers from now on are dropped")
            return None

    def close(self) -> Any:
        try:
            return self.inner.close()
        except (BrokenPipeError, ConnectionResetError):
            return None


class AnsweredErrors(logging.Filter):
    """pygls logs each JSON-RPC error a handler raises on purpose (invalid params, a
    refused command) as an ERROR with a traceback. Editors record our stderr as errors
    (Helix tags every line `[ERROR]`), so a user reading their log would take an answer
    for a crash: such a record becomes one INFO line naming the error. Other exceptions
    keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("pygls.") and isinstance(error, JsonRpcException):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = (
                "request.answered_with_error %s: %s",
                (
                    type(error).__name__,
                    error,
                ),
            )
            record.exc_info, record.exc_text = None, None
        return True


class AiguilleurProtocol(LanguageServerProtocol):
    # Set when `shutdown` arrives, before its handler runs.
    shutting_down = False

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(_EditorWriter(writer), include_headers)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancellable: dict[int | str, asyncio.Task[Any]] = {}

    def cancellable_here(self) -> None:
        """Let `$/cancelRequest` for the current request cancel the calling task."""
        msg_id = REQUEST_ID.get()
        task = asyncio.current_task()
        if msg_id is not None and task is not None:
            self.cancellable[msg_id] = task
            task.add_done_callback(lambda _: self.cancellable.pop(msg_id, None))

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            msg_id = data.get("id")
            method = data.get("method")
            if isinstance(msg_id, int | str) and isinstance(method, str):
                log.warning("request.invalid_params id=%s method=%s", msg_id, method)
                return _Unreadable(msg_id, method, error)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unreadable):
            self._send_response(message.id, error=message.error.to_response_error())
            return
        method = getattr(message, "method", None)
        msg_id = getattr(message, "id", None)
        stopping = self._shutdown or self.shutting_down
        if stopping and method is not None and method != lsp.EXIT and msg_id is not None:
            error = JsonRpcInvalidRequest(f"the server is shutting down; {method} refused")
            self._send_response(msg_id, error=error.to_response_error())
            return
        if method == lsp.SHUTDOWN:
            self.shutting_down = True
        if method == lsp.CANCEL_REQUEST:
            target = getattr(getattr(message, "params", None), "id", None)
            task = self.cancellable.get(target) if target is not None else None
            if task is not None:
                task.cancel()
        token = REQUEST_ID.set(msg_id)
        try:
            super().handle_message(message)
        finally:
            REQUEST_ID.reset(token)


class AiguilleurServer(LanguageServer):
    """Behaviour only: all state lives in the Session and the Runtime."""

    def report_server_error(self, error: Exception, source: Any) -> None:
        # Malformed frames are the client's problem, already answered where possible:
        # log them rather than pop up "Error in server" in the user's face.
        if source is JsonRpcException or isinstance(error, JsonRpcException):
            log.warning("protocol.error error=%r", error)
            return
        super().report_server_error(error, source)
