"""pygls' protocol, made to answer every request exactly once.

Stock pygls drops a request whose params do not match the LSP types (and pops up an
"Error in server" message), and ignores requests after `shutdown` without answering.
Both leave the editor waiting forever; here each gets a JSON-RPC error instead.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)


class _Unreadable:
    """A request whose params could not be decoded: answered with the decoding error."""

    def __init__(self, msg_id: int | str, method: str, error: JsonRpcException) -> None:
        self.id = msg_id
        self.method = method
        self.error = error


class AiguilleurProtocol(LanguageServerProtocol):
    # Set when `shutdown` arrives, before its handler runs.
    shutting_down = False

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
        super().handle_message(message)


class AiguilleurServer(LanguageServer):
    """Behaviour only: all state lives in the Session and the Runtime."""

    def report_server_error(self, error: Exception, source: Any) -> None:
        # Malformed frames are the client's problem, already answered where possible:
        # log them rather than pop up "Error in server" in the user's face.
        if source is JsonRpcException or isinstance(error, JsonRpcException):
            log.warning("protocol.error error=%r", error)
            return
        super().report_server_error(error, source)
