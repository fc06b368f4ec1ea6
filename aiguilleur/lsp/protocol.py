"""pygls' protocol, made to answer every request exactly once; the one module that
reaches pygls' private names (as backends/llama_native.py is for llama-cpp-python).

Stock pygls drops a request whose params do not match the LSP types (and pops up an
"Error in server" message), and ignores requests after `shutdown` without answering.
Both leave the editor waiting forever; here each gets a JSON-RPC error instead. A daemon
connection (ConnectionProtocol, serve_connection) ends at `exit` without ending the
process; `client_process` is the process a pygls client started (replay, tests, benches).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Generator
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

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


class ConnectionProtocol(AiguilleurProtocol):
    """The protocol of one daemon connection: `exit` ends the connection, not the
    process (pygls' own calls sys.exit, which would end every window's server)."""

    connection_done: threading.Event | None = None  # set by the daemon: ends the loop
    _CLOSE_TURNS = 50

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        if (user_handler := self.fm.features.get(lsp.EXIT)) is not None:
            yield user_handler, args, None
        if self.connection_done is not None:
            self.connection_done.set()
        self._close_once_answered(self._CLOSE_TURNS)

    def _close_once_answered(self, turns: int) -> None:
        """Close once the answers owed are sent: pygls sends a request's answer a few
        loop turns after its handler returns, and an editor may send `exit` right
        behind `shutdown` without waiting for its answer."""
        if self._request_futures and turns > 0:
            asyncio.get_running_loop().call_soon(self._close_once_answered, turns - 1)
        elif self.writer is not None:
            self.writer.close()


class _LoopWriter:
    """Writes on the loop's thread: pygls answers threaded handlers from their thread."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def write(self, data: bytes) -> None:
        if threading.get_ident() == self._thread:
            self._write(data)  # in order with everything else the loop does
        else:
            self._loop.call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._writer.close)


async def serve_connection(
    server: LanguageServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one daemon connection until the editor's `exit` or the socket's end."""
    stop = threading.Event()
    protocol = server.protocol
    assert isinstance(protocol, ConnectionProtocol)
    protocol.connection_done = stop
    protocol.set_writer(_LoopWriter(writer))
    try:
        await run_async(
            stop_event=stop,
            reader=reader,
            protocol=protocol,
            logger=log,
            error_handler=server.report_server_error,
        )
    finally:
        server.thread_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0)  # what threads queued for this writer goes out first
        writer.close()
        # pygls caches message types per protocol object: let this one go.
        LanguageServerProtocol.get_message_type.cache_clear()
        LanguageServerProtocol.get_result_type.cache_clear()


def client_process(client: Any) -> Any:
    """The server process a pygls (or pytest-lsp) client started, or None."""
    return client._server
