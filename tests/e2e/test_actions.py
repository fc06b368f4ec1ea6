"""Code actions through the real server and the fake OpenRouter: listing without a model
call, resolve and command paths, stale edits, instructions, diagnostics, privacy."""

from __future__ import annotations

import ast
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import code_actions, lsp_session, open_doc

KEY = "sk-or-v1-actions-test"
SOURCE = "import os\n\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"
DOCUMENTED = 'def add(a, b):\n    """Add two numbers."""\n    return a + b'


@pytest.fixture
def fake() -> Iterator[FakeOpenRouter]:
    model = FakeModel("vendor/strong", reply=f"```python\n{DOCUMENTED}\n```")
    with FakeOpenRouter(models=[model], keys=[FakeKey(KEY, label="work")]) as server:
        yield server


@pytest.fixture
def action_home(home: TestHome, tiny_model: Path, fake: FakeOpenRouter) -> TestHome:
    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\n'
        f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\ndaily = 1.0\n'
        '[[routes.code_action]]\nname = "strong"\nbackend = "openrouter"\nkey = "work"\n'
        'model = "vendor/strong"\n'
    )
    return home


def session(home: TestHome, preset: str = "neovim") -> Any:
    return lsp_session(home, preset, env={"AIGUILLEUR_TEST_KEY": KEY})


def apply(text: str, edits: list[lsp.TextEdit]) -> str:
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for e in sorted(
        edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True
    ):
        a = offsets[e.range.start.line] + e.range.start.character
        b = offsets[e.range.end.line] + e.range.end.character
        text = text[:a] + e.new_text + text[b:]
    return text


def titled(found: list[Any], word: str) -> Any:
    return next(a for a in found if word in a.title)


async def test_document_is_listed_without_a_model_call_and_resolves_to_an_edit(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        found = await code_actions(client, uri, 2, 4)
        assert not fake.bodies("/chat/completions")  # listing is instant and free
        doc = titled(found, "Document")
        assert doc.edit is None and doc.command is None
        resolved = await client.code_action_resolve_async(doc)
        logged = [m.message for m in client.log_messages if "vendor/strong" in m.message]
    edits = resolved.edit.changes[uri]
    assert apply(SOURCE, edits) == f"import os\n\n{DOCUMENTED}\n\nprint(add(1, 2))\n"
    [versioned] = resolved.edit.document_changes
    assert versioned.text_document.version == 1
    assert len(logged) == 1


async def test_an_edit_for_a_changed_document_is_refused(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        doc = titled(await code_actions(client, uri, 2, 4), "Document")
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [lsp.TextDocumentContentChangeWholeDocument(text=SOURCE + "x = 1\n")],
            )
        )
        with pytest.raises(JsonRpcException) as refused:
            await client.code_action_resolve_async(doc)
        shown = [m.message for m in client.messages if "changed" in m.message]
    assert "changed" in str(refused.value) and len(shown) == 1
    assert not fake.bodies("/chat/completions")


async def test_clients_that_do_not_resolve_get_a_command_that_applies_the_edit(
    action_home: TestHome,
) -> None:
    applied: list[lsp.WorkspaceEdit] = []
    async with session(action_home, preset="emacs") as client:

        @client.feature(lsp.WORKSPACE_APPLY_EDIT)
        def _apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            applied.append(params.edit)
            return lsp.ApplyWorkspaceEditResult(applied=True)

        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        doc = titled(await code_actions(client, uri, 2, 4), "Document")
        # The client library resolves `Command | CodeAction` to Command here and turns the
        # action's `command` object into its repr: read it back.
        raw = ast.literal_eval(doc.command) if isinstance(doc, lsp.Command) else None
        assert raw is not None and raw["command"] == "aiguilleur.action"
        result = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=raw["command"], arguments=raw["arguments"])
        )
    assert result == {"applied": True}
    [edit] = applied
    assert edit.document_changes is not None
    [change] = edit.document_changes
    assert apply(SOURCE, change.edits).startswith(f"import os\n\n{DOCUMENTED}\n")


async def test_rewrite_takes_its_instruction_from_the_comment_above(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    text = "# use math.fsum for precision\ndef add(a, b):\n    return a + b\n"
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "m.py", text)
        rewrite = titled(await code_actions(client, uri, 1, 3), "Rewrite")
        assert "Rewrite: use math.fsum for precision · strong · " in rewrite.title
        await client.code_action_resolve_async(rewrite)
    [body] = fake.bodies("/chat/completions")
    assert "Instruction: use math.fsum for precision" in body["messages"][-1]["content"]


async def test_a_diagnostic_gets_a_quickfix_that_sends_its_message(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    diag = lsp.Diagnostic(
        range=lsp.Range(lsp.Position(3, 15), lsp.Position(3, 16)),
        message="undefined name 'c'",
        severity=lsp.DiagnosticSeverity.Error,
    )
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        fix = titled(await code_actions(client, uri, 3, 4, [diag]), "Fix")
        assert fix.kind == lsp.CodeActionKind.QuickFix
        await client.code_action_resolve_async(fix)
    [body] = fake.bodies("/chat/completions")
    assert "undefined name 'c'" in body["messages"][-1]["content"]


async def test_actions_on_private_files_never_reach_the_server(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "server.pem", "KEY DATA\nMORE\n")
        doc = titled(await code_actions(client, uri, 0, 2), "Document")
        with pytest.raises(JsonRpcException):
            await client.code_action_resolve_async(doc)
        shown = [m.message for m in client.messages if "private" in m.message]
    assert not fake.bodies("/chat/completions")
    assert len(shown) == 1 and "server.pem" in shown[0]


async def test_write_tests_creates_the_test_file_or_extends_it(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    fake.models[0].reply = "def test_add():\n    assert add(1, 2) == 3"
    (action_home.workspace / "tests").mkdir()
    source = action_home.workspace / "m.py"
    async with session(action_home) as client:
        uri = open_doc(client, source, SOURCE)
        tests = titled(await code_actions(client, uri, 2, 4), "Write tests")
        created = (await client.code_action_resolve_async(tests)).edit
        target = action_home.workspace / "tests" / "test_m.py"
        target.write_text("import m\n")  # as if the editor applied the first edit
        tests = titled(await code_actions(client, uri, 2, 4), "Write tests")
        extended = (await client.code_action_resolve_async(tests)).edit
    create, write = created.document_changes
    assert isinstance(create, lsp.CreateFile) and create.uri == target.as_uri()
    assert write.edits[0].new_text == "def test_add():\n    assert add(1, 2) == 3\n"
    [append] = extended.changes[target.as_uri()]
    assert (
        apply("import m\n", [append])
        == "import m\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    body = fake.bodies("/chat/completions")[0]
    assert "tests/test_m.py" in body["messages"][-1]["content"]
    assert "pytest" in body["messages"][0]["content"]


async def test_each_action_has_a_kind_the_server_declares_and_light_bulbs_show(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    # VS Code's light bulb leaves `source` actions out (they go to "Source Action..."),
    # and editors ask only for the kinds the server declared.
    async with session(action_home) as client:
        declared = client.initialize_result.capabilities.code_action_provider
        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        found = await code_actions(client, uri, 0, 2)
    assert isinstance(declared, lsp.CodeActionOptions)
    kinds = set(declared.code_action_kinds or [])
    for action in found:
        if isinstance(action, lsp.CodeAction) and action.kind is not None:
            assert action.kind in kinds, action.title
            assert not action.kind.startswith("source"), action.title
    assert titled(found, "Write tests").kind == lsp.CodeActionKind.Refactor


async def test_a_paid_action_tells_its_price_before_it_runs_and_the_ledger_keeps_it(
    action_home: TestHome, fake: FakeOpenRouter
) -> None:
    async with session(action_home) as client:
        uri = open_doc(client, action_home.workspace / "m.py", SOURCE)
        before = titled(await code_actions(client, uri, 2, 4), "Document")
        # Nothing was settled for this model yet: the most it can cost.
        assert re.fullmatch(r"aiguilleur: Document this code · strong · ≤ \$0\.\d{4}", before.title)
        await client.code_action_resolve_async(before)
        after = titled(await code_actions(client, uri, 2, 4), "Document")
        await client.code_action_resolve_async(after)
    # Learnt from the first settle: what it will likely cost, and it did.
    match = re.fullmatch(r"aiguilleur: Document this code · strong · ~\$(0\.\d{4})", after.title)
    assert match is not None
    billed = [g["total_cost"] for g in fake.generations.values()]
    assert len(billed) == 2 and float(match.group(1)) == pytest.approx(billed[1], abs=5e-5)
    bound = float(before.title.rsplit("$", 1)[1])
    assert billed[0] <= bound
    db = action_home.root / "data" / "aiguilleur" / "ledger.db"
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT estimated_nusd, cost_nusd FROM requests ORDER BY id").fetchall()
    assert rows[1][0] == pytest.approx(rows[1][1], rel=0.05)  # the estimate beside the cost
