"""The repository index through the real server: built when a workspace opens, shared
by the windows of a daemon, following saves and deleted files, reported by status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from tests.support.home import TestHome
from tests.support.lsp import lsp_session, status


async def index_when(client: Any, ready: Callable[[Any], bool], seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        s = await status(client)
        if s.index is not None and ready(s.index):
            return s.index
        assert time.monotonic() < deadline, f"index never got there: {s.index}"
        await asyncio.sleep(0.05)


def workspace(home: TestHome) -> Path:
    pkg = home.workspace / "pkg"
    pkg.mkdir()
    (pkg / "models.py").write_text("class User:\n    def rename(self, name: str) -> None: ...\n")
    (pkg / "views.py").write_text("from pkg.models import User\n\ndef show(u: User): ...\n")
    (home.workspace / "secrets").mkdir()
    (home.workspace / "secrets" / "keys.py").write_text("def signing_key(): ...\n")
    return pkg


async def test_the_index_is_built_follows_saves_and_deletions(
    home: TestHome, tiny_model: Path
) -> None:
    home.write_config(f'[local]\nmodel = "{tiny_model}"\n')
    pkg = workspace(home)
    async with lsp_session(home) as client:
        built = await index_when(client, lambda i: i.files == 2)
        assert built.definitions == 3  # User, rename, show; secrets/ is private
        assert built.root == str(home.workspace.resolve())
        assert len(list(home.root.rglob("index/*/cache.db"))) == 1  # under the cache dir
        # A save brings the file's new definitions in.
        (pkg / "views.py").write_text("def show(u): ...\n\ndef hide(u): ...\n")
        client.text_document_did_save(
            lsp.DidSaveTextDocumentParams(lsp.TextDocumentIdentifier((pkg / "views.py").as_uri()))
        )
        await index_when(client, lambda i: i.definitions == 4)
        # A file deleted on disk (the editor's file watcher says so) leaves it.
        (pkg / "models.py").unlink()
        client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                [lsp.FileEvent((pkg / "models.py").as_uri(), lsp.FileChangeType.Deleted)]
            )
        )
        gone = await index_when(client, lambda i: i.files == 1)
        assert gone.definitions == 2


async def test_a_workspace_that_turns_it_off_gets_no_index(
    home: TestHome, tiny_model: Path
) -> None:
    home.write_config(f'[local]\nmodel = "{tiny_model}"\n')
    workspace(home)
    (home.workspace / ".aiguilleur.toml").write_text("[index]\nenabled = false\n")
    async with lsp_session(home) as client:
        # Where it is on, the index is there well within this (the test above).
        await asyncio.sleep(2)
        assert (await status(client)).index is None
    assert not list(home.root.rglob("index/*/cache.db"))


async def test_indexing_shows_a_progress_bar_that_ends_with_what_it_found(
    home: TestHome, tiny_model: Path
) -> None:
    home.write_config(f'[local]\nmodel = "{tiny_model}"\n')
    workspace(home)
    async with lsp_session(home) as client:
        await index_when(client, lambda i: i.files == 2)
        deadline = time.monotonic() + 30
        while True:
            bars = [r for t, r in client.progress_reports.items() if "load" not in str(t)]
            if bars and bars[0] and isinstance(bars[0][-1], lsp.WorkDoneProgressEnd):
                break
            assert time.monotonic() < deadline, client.progress_reports
            await asyncio.sleep(0.05)
    begin, *_, end = bars[0]
    assert isinstance(begin, lsp.WorkDoneProgressBegin) and begin.message == "indexing workspace"
    assert isinstance(end, lsp.WorkDoneProgressEnd) and end.message == "2 files, 3 definitions"


async def test_a_save_that_changes_the_block_is_prefilled_before_the_next_keystroke(
    home: TestHome, tiny_model: Path
) -> None:
    """The repository block of the file being edited changes when a file it draws on is
    saved: the new prompt head is evaluated while the editor is idle, and the next
    suggestion, whose prompt holds the new definition, evaluates only a few tokens."""
    from tests.support.lsp import idle, inline, last_completion, open_doc

    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\nadapt_to_load = false\nn_threads = 1\n'
        "[completion]\nmax_tokens = 4\nprefix_tokens = 1200\nsuffix_tokens = 32\n"
        "extra_tokens = 0\nrepository_tokens = 600\ntime_budget_ms = 600000\n"
        "[cache]\nkv_disk_mb = 0\nkv_ram_mb = 0\n"
    )
    pkg = workspace(home)
    text = "from pkg.models import User\n\n\ndef show(u: User) -> None:\n    u.\n"
    async with lsp_session(home) as client:
        await index_when(client, lambda i: i.files == 2)
        uri = open_doc(client, pkg / "views.py", text)
        await inline(client, uri, 4, 6)
        before = await last_completion(client, uri)
        prefilled = (await idle(client)).engine.prefilled_tokens
        (pkg / "models.py").write_text(
            "class User:\n    def rename(self, name: str) -> None: ...\n"
            "    def promote_to_administrator(self, reason: str) -> None: ...\n"
        )
        client.text_document_did_save(
            lsp.DidSaveTextDocumentParams(lsp.TextDocumentIdentifier((pkg / "models.py").as_uri()))
        )
        await idle(client, lambda s: s.engine.prefilled_tokens > prefilled)
        await inline(client, uri, 4, 4)  # elsewhere on the line: not the answer shown
        after = await last_completion(client, uri)
    assert before is not None and after is not None
    grown = len("    def promote_to_administrator(self, reason: str) -> None: ...\n")
    assert after["usage"]["prompt_tokens"] >= before["usage"]["prompt_tokens"] + grown - 8
    assert after["usage"]["evaluated_tokens"] <= 40, after["usage"]


async def test_a_receiver_typed_after_the_block_was_built_gets_its_class_while_idle(
    home: TestHome, tiny_model: Path
) -> None:
    """`s = open_store()` then `s.` in a function whose block was built before: the
    keystroke is answered with the old block (nothing more to evaluate); while the editor
    is idle the engine evaluates a block that shows Store, and the next suggestion's
    prompt holds it at the cost of a few tokens."""
    from tests.support.lsp import change_doc, idle, inline, last_completion, open_doc

    home.write_config(
        f'[local]\nmodel = "{tiny_model}"\nn_ctx = 2048\nadapt_to_load = false\nn_threads = 1\n'
        "[completion]\nmax_tokens = 4\nprefix_tokens = 1200\nsuffix_tokens = 32\n"
        "extra_tokens = 0\nrepository_tokens = 600\ntime_budget_ms = 600000\n"
        "[cache]\nkv_disk_mb = 0\nkv_ram_mb = 0\n"
    )
    pkg = home.workspace / "pkg"
    pkg.mkdir()
    (pkg / "store.py").write_text(
        "class Store:\n    def fetch_everything_for(self, key: str) -> bytes: ...\n"
        "    def forget_everything_about(self, key: str) -> None: ...\n\n\n"
        "def open_store() -> Store: ...\n"
    )
    text = "from pkg.store import open_store\n\n\ndef show() -> None:\n    \n"
    async with lsp_session(home) as client:
        await index_when(client, lambda i: i.files == 1)
        uri = open_doc(client, pkg / "report.py", text)
        await inline(client, uri, 4, 4)
        entered = await last_completion(client, uri)
        change_doc(client, uri, 2, 4, 4, "s = open_store()\n    s.")
        await inline(client, uri, 5, 6)
        typed = await last_completion(client, uri)
        prefilled = (await idle(client)).engine.prefilled_tokens
        await idle(client, lambda s: s.engine.prefilled_tokens > prefilled)
        await inline(client, uri, 5, 4)  # elsewhere on the line: not the answer shown
        after = await last_completion(client, uri)
    assert entered is not None and typed is not None and after is not None
    # The keystroke's prompt kept the old block (it grew by the typed line alone); the
    # block that shows Store, with its two methods, came after the pause.
    typed_grew = typed["usage"]["prompt_tokens"] - entered["usage"]["prompt_tokens"]
    block_grew = after["usage"]["prompt_tokens"] - typed["usage"]["prompt_tokens"]
    assert block_grew > 2 * typed_grew > 0, (entered, typed, after)
    assert after["usage"]["evaluated_tokens"] <= 40, after["usage"]
