"""What the shim keeps for a new daemon: fast tests of the record, without processes."""

from __future__ import annotations

from typing import Any

import msgspec

from aiguilleur.daemon.record import FOLD_AFTER, Envelope, SessionRecord, frame


def message(**fields: Any) -> tuple[bytes, Envelope]:
    body = msgspec.json.encode({"jsonrpc": "2.0", **fields})
    return frame(body), msgspec.json.decode(body, type=Envelope)


def editor_sends(record: SessionRecord, **fields: Any) -> bool:
    raw, envelope = message(**fields)
    return record.note_from_editor(raw, envelope)


def daemon_sends(record: SessionRecord, **fields: Any) -> None:
    record.note_from_daemon(message(**fields)[1])


def insert(uri: str, version: int, line: int, char: int, text: str) -> dict[str, Any]:
    pos = {"line": line, "character": char}
    return {
        "textDocument": {"uri": uri, "version": version},
        "contentChanges": [{"range": {"start": pos, "end": pos}, "text": text}],
    }


def replayed(record: SessionRecord) -> list[dict[str, Any]]:
    out = []
    for raw in record.state_frames():
        out.append(msgspec.json.decode(raw[raw.index(b"\r\n\r\n") + 4 :]))
    return out


def initialized_record() -> SessionRecord:
    record = SessionRecord()
    editor_sends(record, id=1, method="initialize", params={"capabilities": {}})
    daemon_sends(record, id=1, result={"capabilities": {"positionEncoding": "utf-16"}})
    editor_sends(record, method="initialized", params={})
    return record


def test_the_replay_is_initialize_under_the_shims_id_then_state_then_documents() -> None:
    record = initialized_record()
    editor_sends(record, method="workspace/didChangeConfiguration", params={"settings": {"a": 1}})
    editor_sends(record, method="workspace/didChangeConfiguration", params={"settings": {"a": 2}})
    doc = {"uri": "file:///a.py", "languageId": "python", "version": 1, "text": "x\n"}
    editor_sends(record, method="textDocument/didOpen", params={"textDocument": doc})
    editor_sends(
        record, method="textDocument/didChange", params=insert("file:///a.py", 2, 0, 1, "y")
    )
    closed = {"uri": "file:///b.py", "languageId": "python", "version": 1, "text": ""}
    editor_sends(record, method="textDocument/didOpen", params={"textDocument": closed})
    editor_sends(
        record, method="textDocument/didClose", params={"textDocument": {"uri": closed["uri"]}}
    )
    init = record.initialize_for_replay()
    assert init is not None
    request = msgspec.json.decode(init[init.index(b"\r\n\r\n") + 4 :])
    assert request["method"] == "initialize" and request["id"] == record.replay_id != 1
    methods = [(m["method"], m["params"].get("settings")) for m in replayed(record)]
    assert methods == [
        ("initialized", None),
        ("workspace/didChangeConfiguration", {"a": 2}),  # the last settings only
        ("textDocument/didOpen", None),
        ("textDocument/didChange", None),  # and nothing of the closed file
    ]


def test_what_the_dead_daemon_owed_is_answered_once_and_old_answers_are_dropped() -> None:
    record = initialized_record()
    editor_sends(record, id=7, method="textDocument/inlineCompletion", params={})
    editor_sends(record, id=8, method="textDocument/completion", params={})
    daemon_sends(record, id=8, result=None)  # answered before it died
    daemon_sends(record, id="w1", method="window/workDoneProgress/create", params={})
    daemon_sends(record, method="$/progress", params={"token": "t", "value": {"kind": "begin"}})
    owed = record.owed_by_daemon()
    assert [o.get("id") for o in owed] == [7, None]
    assert owed[0]["error"]["code"] == -32803
    assert owed[1]["params"] == {"token": "t", "value": {"kind": "end"}}
    assert record.owed_by_daemon() == []  # once
    # The editor's answer to the dead daemon's request has nobody to go to.
    assert not editor_sends(record, id="w1", result=None)


def test_many_changes_fold_into_one_didopen_with_the_same_text_in_utf16() -> None:
    record = initialized_record()
    doc = {"uri": "file:///a.py", "languageId": "python", "version": 1, "text": "s = '😋'\n"}
    editor_sends(record, method="textDocument/didOpen", params={"textDocument": doc})
    expected = "s = '😋"
    # Typed after the emoji, which is two UTF-16 units: positions count them so.
    for i in range(FOLD_AFTER + 3):
        editor_sends(
            record,
            method="textDocument/didChange",
            params=insert("file:///a.py", i + 2, 0, 7 + i, "ab"[i % 2]),
        )
        expected += "ab"[i % 2]
    expected += "'\n"
    folding = record.fold_due()
    assert folding is not None
    folding.run()
    record.folded(folding)
    frames = replayed(record)
    opened = frames[1]["params"]["textDocument"]
    assert opened["text"] == expected and opened["version"] == FOLD_AFTER + 4
    assert len(frames) == 2 and record.fold_due() is None
