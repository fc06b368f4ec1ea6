"""What became of the suggestions shown, through the real server: each item carries the
command an editor runs on accept, typing a suggestion through counts as accepting it,
other code as dismissing it, and `aiguilleur usage` shows per route what was taken and
what each suggestion taken cost."""

from __future__ import annotations

import json
from pathlib import Path

from lsprotocol import types as lsp

from tests.support.fake_openrouter import FakeKey, FakeModel, FakeOpenRouter
from tests.support.home import TestHome
from tests.support.lsp import change_doc, lsp_session, open_doc, run_command

KEY = "sk-or-v1-acceptance"
SOURCE = "def area(r):\n    return \n"
REPLY = "3.14159 * r * r"


async def ask(client: object, uri: str, line: int, char: int) -> lsp.InlineCompletionItem:
    result = await client.text_document_inline_completion_async(  # type: ignore[attr-defined]
        lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(lsp.InlineCompletionTriggerKind.Automatic),
            text_document=lsp.TextDocumentIdentifier(uri),
            position=lsp.Position(line, char),
        )
    )
    items = result.items if isinstance(result, lsp.InlineCompletionList) else result
    assert items, "no suggestion"
    return items[0]


def usage(home: TestHome) -> dict[str, object]:
    out = home.cli("usage", "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


async def test_accepted_typed_through_and_dismissed_suggestions_are_counted_per_route(
    home: TestHome, tiny_model: Path
) -> None:
    with FakeOpenRouter(
        models=[FakeModel("vendor/coder", reply=REPLY)], keys=[FakeKey(KEY, label="work")]
    ) as fake:
        home.write_config(
            f'[local]\nmodel = "{tiny_model}"\n[cache]\nresponses_mb = 0\n'
            f'[keys.work]\nenv = "AIGUILLEUR_TEST_KEY"\nbase_url = "{fake.base_url}"\n'
            "daily = 1.0\n"
            '[[routes.completion]]\nname = "cloud"\nbackend = "openrouter"\nkey = "work"\n'
            'model = "vendor/coder"\n'
        )
        async with lsp_session(home, env={"AIGUILLEUR_TEST_KEY": KEY}) as client:
            uri = open_doc(client, home.workspace / "m.py", SOURCE)
            # 1. Accepted, as VS Code does it: the text inserted, then the item's command.
            item = await ask(client, uri, 1, 11)
            assert item.insert_text == REPLY and item.command is not None
            assert item.command.command == "aiguilleur.accepted"
            change_doc(client, uri, 2, 1, 11, REPLY)
            known = await run_command(client, item.command.command, *item.command.arguments)
            assert known == {"known": True}
            # 2. Typed through to its end: the same suggestion, then accepted.
            change_doc(client, uri, 3, 1, 11 + len(REPLY), "\n    ")
            second = await ask(client, uri, 2, 4)
            change_doc(client, uri, 4, 2, 4, REPLY[:5])
            rest = await ask(client, uri, 2, 9)  # answered from what was shown
            assert rest.insert_text == REPLY[5:]
            assert rest.command is not None and second.command is not None
            assert rest.command.arguments == second.command.arguments  # one suggestion
            change_doc(client, uri, 5, 2, 9, REPLY[5:])
            # 3. Dismissed: other code typed where it was shown.
            change_doc(client, uri, 6, 2, 4 + len(REPLY), "\n    ")
            await ask(client, uri, 3, 4)
            change_doc(client, uri, 7, 3, 4, "pass")
            await ask(client, uri, 3, 8)  # the next one: the last is dismissed
        billed = sum(g["total_cost"] for g in fake.generations.values())
    data = usage(home)
    [cloud] = [a for a in data["acceptance"] if a["route"] == "cloud"]  # type: ignore[union-attr, index]
    # The last suggestion was still shown when the editor quit: its outcome too is known.
    assert (cloud["shown"], cloud["accepted"], cloud["partial"]) == (4, 2, 0)
    assert cloud["model"] == "vendor/coder" and cloud["rate"] == 0.5
    assert abs(cloud["spend_usd"] - billed) < 1e-9
    assert abs(cloud["cost_per_accepted_usd"] - billed / 2) < 1e-9
    text = home.cli("usage").stdout
    assert "suggestions (taken" in text and "2 of 4" in text
