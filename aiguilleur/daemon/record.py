"""What the shim keeps of one editor's conversation with the daemon, so that a new daemon
can carry on where a dead one stopped: the `initialize` request, the editor's settings,
each open document (its `didOpen` and the changes since), and what each side still owes
the other (requests in flight, progress bars begun).

Documents are kept as the frames the editor sent and replayed as they came, so the new
daemon sees the very text the old one had, in the editor's own position encoding. Once a
document has many changes, they are folded into one `didOpen` by pygls (the same code
that applies them in the daemon), in a thread, off the relay's way."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

# (the daemon's own record of its documents is pygls'; lsprotocol is imported lazily here:
# it costs 0.3 s, and the shim an editor starts must be quick to answer)

FOLD_AFTER = 400  # changes kept per document before they are folded into its didOpen
Id = int | str


class Envelope(msgspec.Struct):
    """The parts of a JSON-RPC message the shim reads; the rest is forwarded unread."""

    id: Id | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw()  # (msgspec.Raw cannot be in a union: empty if absent)
    result: msgspec.Raw = msgspec.Raw()


class _DocId(msgspec.Struct):
    uri: str


class _DocParams(msgspec.Struct):
    textDocument: _DocId  # (the protocol's name)


class _ProgressValue(msgspec.Struct):
    kind: str | None = None


class _Progress(msgspec.Struct):
    token: Id
    value: _ProgressValue


_decode_envelope = msgspec.json.Decoder(Envelope).decode
_decode_doc = msgspec.json.Decoder(_DocParams).decode
_decode_progress = msgspec.json.Decoder(_Progress).decode


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, Envelope | None] | None:
    """The next frame as it came (headers and body), and its envelope when it is JSON-RPC.
    None at the end of the stream. A frame the shim cannot read is passed on as it is:
    the daemon answers bad input the way a standalone server does."""
    try:
        header = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as end:
        if end.partial.strip():
            raise
        return None  # the end of the stream, between frames
    length = None
    for line in header.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                length = None
    if length is None or length < 0:
        return header, None
    body = await reader.readexactly(length)
    try:
        message = _decode_envelope(body)
    except msgspec.DecodeError:
        message = None
    return header + body, message


class _Document:
    def __init__(self, opened: bytes) -> None:
        self.opened = opened  # the didOpen frame's body
        self.changes: list[bytes] = []  # didChange bodies since
        self.unfoldable = False  # pygls could not apply them: keep them as they are


class Folding:
    """Folds a document's first changes into one didOpen (run in a thread)."""

    def __init__(self, uri: str, doc: _Document, count: int, encoding: str) -> None:
        self.uri = uri
        self.doc = doc
        self.opened = doc.opened
        self.changes = doc.changes[:count]
        self.encoding = encoding
        self.result: bytes | None = None

    def run(self) -> None:
        from lsprotocol import types as lsp
        from lsprotocol.converters import get_converter
        from pygls.workspace import PositionCodec, TextDocument

        convert = get_converter()
        opened = msgspec.json.decode(self.opened)
        item = opened["params"]["textDocument"]
        doc = TextDocument(
            item["uri"],
            item["text"],
            item.get("version"),
            item.get("languageId"),
            position_codec=PositionCodec(self.encoding),
        )
        version = item.get("version")
        for body in self.changes:
            params = convert.structure(
                msgspec.json.decode(body)["params"], lsp.DidChangeTextDocumentParams
            )
            for change in params.content_changes:
                doc.apply_change(change)
            version = params.text_document.version
        item = {**item, "text": doc.source, "version": version}
        self.result = msgspec.json.encode({**opened, "params": {"textDocument": item}})


class SessionRecord:
    def __init__(self) -> None:
        self.initialize: bytes | None = None  # the editor's initialize request body
        self.initialized: bytes | None = None
        self.settings: bytes | None = None  # the last workspace/didChangeConfiguration
        self.folders: list[bytes] = []  # workspace/didChangeWorkspaceFolders, in order
        self.documents: dict[str, _Document] = {}
        self.from_editor: dict[Id, str] = {}  # requests the daemon has not answered
        self.from_daemon: set[Id] = set()  # requests the editor has not answered
        self.progress: set[Id] = set()  # progress bars begun and not ended
        self.shutdown_asked = False
        self.encoding = "utf-16"
        self.replays = 0

    @property
    def replay_id(self) -> str:
        return f"aiguilleur-shim-replay-{self.replays}"

    # -- what goes by ---------------------------------------------------------------------

    def note_from_editor(self, raw: bytes, message: Envelope | None) -> bool:
        """Record a frame from the editor; False for one not to forward (an answer to a
        request of a daemon that is gone)."""
        if message is None:
            return True
        body = raw[raw.index(b"\r\n\r\n") + 4 :]
        method = message.method
        if method is None:
            if message.id in self.from_daemon:
                self.from_daemon.discard(message.id)
                return True
            return False
        if message.id is not None:
            self.from_editor[message.id] = method
            if method == "initialize":
                self.initialize = body
            elif method == "shutdown":
                self.shutdown_asked = True
            return True
        if method == "initialized":
            self.initialized = body
        elif method == "workspace/didChangeConfiguration":
            self.settings = body
        elif method == "workspace/didChangeWorkspaceFolders":
            self.folders.append(body)
        elif method.startswith("textDocument/did") and message.params:
            self._note_document(method, body, message.params)
        return True

    def _note_document(self, method: str, body: bytes, params: msgspec.Raw) -> None:
        try:
            uri = _decode_doc(params).textDocument.uri
        except msgspec.DecodeError:
            return  # the daemon will say what is wrong with it
        if method == "textDocument/didOpen":
            self.documents[uri] = _Document(body)
        elif method == "textDocument/didChange" and uri in self.documents:
            self.documents[uri].changes.append(body)
        elif method == "textDocument/didClose":
            self.documents.pop(uri, None)

    def note_from_daemon(self, message: Envelope) -> None:
        if message.method is None:
            if message.id is not None and self.from_editor.pop(message.id, None) == "initialize":
                self.note_capabilities(message)
            return
        if message.id is not None:
            self.from_daemon.add(message.id)
        elif message.method == "$/progress" and message.params:
            try:
                progress = _decode_progress(message.params)
            except msgspec.DecodeError:
                return
            if progress.value.kind == "begin":
                self.progress.add(progress.token)
            elif progress.value.kind == "end":
                self.progress.discard(progress.token)

    # -- when the daemon is gone ----------------------------------------------------------

    def owed_by_daemon(self) -> list[dict[str, Any]]:
        """An answer to each request in flight and an end to each progress bar: the dead
        daemon will not send them, and the editor waits for them."""
        owed: list[dict[str, Any]] = []
        for msg_id, method in self.from_editor.items():
            if method == "shutdown":
                owed.append({"id": msg_id, "result": None})
            else:
                owed.append(
                    {
                        "id": msg_id,
                        "error": {
                            "code": -32803,
                            "message": f"aiguilleur: the daemon stopped before answering "
                            f"{method}; ask again",
                        },
                    }
                )
        owed += [
            {"method": "$/progress", "params": {"token": token, "value": {"kind": "end"}}}
            for token in self.progress
        ]
        self.from_editor.clear()
        self.from_daemon.clear()
        self.progress.clear()
        return owed

    def initialize_for_replay(self) -> bytes | None:
        """The editor's initialize, under an id of the shim's (its answer is the shim's)."""
        if self.initialize is None:
            return None
        self.replays += 1
        request = msgspec.json.decode(self.initialize)
        return frame(msgspec.json.encode({**request, "id": self.replay_id}))

    def note_capabilities(self, answer: Envelope) -> None:
        if not answer.result:
            return
        try:
            result = msgspec.json.decode(answer.result)
            self.encoding = result["capabilities"].get("positionEncoding") or "utf-16"
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            pass

    def state_frames(self) -> list[bytes]:
        bodies = [b for b in (self.initialized, self.settings) if b is not None]
        bodies += self.folders
        for doc in self.documents.values():
            bodies += [doc.opened, *doc.changes]
        return [frame(body) for body in bodies]

    # -- keeping it small -----------------------------------------------------------------

    def fold_due(self) -> Folding | None:
        for uri, doc in self.documents.items():
            if len(doc.changes) >= FOLD_AFTER and not doc.unfoldable:
                return Folding(uri, doc, len(doc.changes), self.encoding)
        return None

    def fold_failed(self, folding: Folding) -> None:
        folding.doc.unfoldable = True

    def folded(self, folding: Folding) -> None:
        doc = self.documents.get(folding.uri)
        if doc is not folding.doc or folding.result is None:
            return  # closed or reopened meanwhile: that record is gone anyway
        doc.opened = folding.result
        del doc.changes[: len(folding.changes)]
