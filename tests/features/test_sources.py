"""What chats and code actions are told of the rest of the repository, and what the user
is shown of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aiguilleur.config.settings import ChatConfig, Config
from aiguilleur.context.index import RepositoryIndex, store_dir
from aiguilleur.features.chat import ChatFeature, parse
from aiguilleur.features.sources import sources_for
from aiguilleur.types import Answer, ChatMessage, RequestKind, Usage
from tests.support.needs import Editor, NoRoutes, needs

MODELS = '''class User:
    """A person who logs in."""

    def rename(self, new_name: str) -> None: ...


def load_user(user_id: int) -> User: ...
'''
KEYS = "def signing_key() -> bytes: ...\n"
VIEW = "from app.models import User\nfrom app.keys import signing_key\n\n\ndef show(u): ...\n"


@pytest.fixture
def index(tmp_path: Path) -> RepositoryIndex:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "models.py").write_text(MODELS)
    (root / "app" / "keys.py").write_text(KEYS)
    (root / "app" / "views.py").write_text(VIEW)
    idx = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    idx.refresh()
    return idx


def test_the_definitions_the_code_uses_and_the_question_names(index: RepositoryIndex) -> None:
    view = index.root / "app" / "views.py"
    code = "def greet(u: User) -> None:\n    u.rename(signing_key())\n"
    found = sources_for(index, view, VIEW, code, "and what does load_user return?", 512, ())
    assert "class User:" in found.prompt and "def rename(self, new_name: str)" in found.prompt
    assert "def load_user(user_id: int) -> User:" in found.prompt  # named by the question
    assert "def signing_key() -> bytes:" in found.prompt
    assert "`app/models.py:1` User" in found.listed() and "`app/keys.py:1`" in found.listed()
    # A private file (the session's own globs) is never a source; nothing at budget 0.
    private = sources_for(index, view, VIEW, code, "", 512, ("**/keys.py",))
    assert "signing_key" not in private.prompt and "app/keys.py" not in private.listed()
    assert sources_for(index, view, VIEW, code, "", 0, ()).prompt == ""
    assert sources_for(None, view, VIEW, code, "", 512, ()).prompt == ""
    assert sources_for(index, Path("/elsewhere/x.py"), VIEW, code, "", 512, ()).prompt == ""


def test_a_question_gets_the_code_of_other_files_that_shares_its_words(tmp_path: Path) -> None:
    """Nothing the code imports answers "how are invoices rounded?": the file that
    rounds them does, found by its words; never a private file, whatever its words."""
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    billing = "def total(invoice):\n    return round(sum(invoice.lines), 2)  # invoices rounded\n"
    (root / "app" / "billing.py").write_text(billing)
    (root / "app" / "ledger_secret.py").write_text(billing.replace("total", "audit"))
    (root / "app" / "views.py").write_text("def show(u): ...\n")
    index = RepositoryIndex(root, store_dir(tmp_path / "cache", root))
    index.refresh()
    view = root / "app" / "views.py"
    question = "how are invoices rounded?"
    found = sources_for(index, view, "", "", question, 512, ("**/ledger_secret.py",))
    assert "# app/billing.py, from line 1\ndef total(invoice):" in found.prompt
    assert "`app/billing.py:1`" in found.listed() and "ledger_secret" not in found.prompt
    assert sources_for(index, view, "", "", "what is the weather?", 512, ()).prompt == ""


class Recorded(NoRoutes):
    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []

    async def ask(
        self,
        kind: RequestKind,
        path: str,
        messages: list[ChatMessage],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        self.messages = messages
        if on_text is not None:
            on_text("It renames.")
        return Answer("It renames.", "route", "model", Usage())


async def test_a_chat_is_given_the_definitions_and_its_document_lists_them(
    index: RepositoryIndex,
) -> None:
    view = index.root / "app" / "views.py"
    chat = (
        f"# Chat: x\n<!-- aiguilleur chat; about: {view} -->\n\n## You\n\n"
        "What does this do?\n\n```python\ndef greet(u: User):\n    u.rename('x')\n```\n"
    )
    doc = [chat]

    async def apply(uri: str, base: str, start: int, end: int, new: str) -> bool:
        doc[0] = base[:start] + new + base[end:]
        return True

    routes = Recorded()
    feature = ChatFeature(needs(routes, editor=Editor(apply, index=index)))
    await feature.send("file:///c.md", chat)
    told = "\n".join(m.content for m in routes.messages if m.role == "system")
    assert "def rename(self, new_name: str)" in told
    assert "*context sent: `app/models.py:1` User" in doc[0]
    # The list is for the user: the next turn does not send it back as the model's words.
    assert [m.content for m in parse(doc[0]).messages if m.role == "assistant"] == ["It renames."]
    # Turned off: nothing told, nothing listed.
    routes = Recorded()
    off = Config(chat=ChatConfig(repository_tokens=0))
    feature = ChatFeature(needs(routes, lambda: off, editor=Editor(apply, index=index)))
    doc[0] = chat
    await feature.send("file:///c.md", chat)
    assert len([m for m in routes.messages if m.role == "system"]) == 1
    assert "context sent" not in doc[0]
