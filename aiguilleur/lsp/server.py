"""Wiring: LSP methods to features. Handlers translate LSP to aiguilleur types and back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from aiguilleur import __version__
from aiguilleur.config import ConfigLayers, LoadedConfig, as_settings
from aiguilleur.lsp import action_commands, chat_commands
from aiguilleur.lsp.actions import ActionsFeature
from aiguilleur.lsp.completion import CompletionFeature, Suggestion
from aiguilleur.lsp.protocol import AiguilleurProtocol, AiguilleurServer
from aiguilleur.lsp.sanitize import for_editor
from aiguilleur.lsp.uris import path_of
from aiguilleur.runtime import Runtime
from aiguilleur.types import ModelInfo, Usage

log = logging.getLogger(__name__)

USAGE_COMMAND = "aiguilleur.usage"

STARTUP_WAIT_S = 30.0

LAST_COMPLETION = "aiguilleur/lastCompletion"
STATUS = "aiguilleur/status"


class LastCompletionParams(msgspec.Struct):
    uri: str


class Session:
    """State of one editor connection. The runtime (engine, stores) outlives it."""

    def __init__(self, server: LanguageServer, user_config: Path | None = None) -> None:
        self.server = server
        self.layers = ConfigLayers(user_file=user_config)
        self._files_seen: tuple[tuple[int, int, int] | None, ...] = ()
        self.loaded: LoadedConfig = self.load_config()
        self._told: set[str] = set()
        self._reloading = asyncio.Lock()
        self.runtime = Runtime(self.loaded.config, self._problem_from_thread)
        self.completion = CompletionFeature(self.runtime.complete, lambda: self.runtime.config)
        self.actions = ActionsFeature(
            self.runtime.code_action,
            lambda: self.runtime.config,
            lambda: self.layers.workspace_root,
            self.encoding,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._told_no_model = False
        self._progress_token: str | None = None
        # Set once discovery has run and the engine (if any) exists: a request that arrives
        # earlier, as the first one after `initialized` often does, waits instead of
        # being answered empty for want of a backend.
        self.runtime_started = asyncio.Event()

    # -- messages -------------------------------------------------------------------

    def show(self, message: str, kind: lsp.MessageType = lsp.MessageType.Warning) -> None:
        # Messages can quote a remote server's error text: no control characters either.
        self.server.window_show_message(
            lsp.ShowMessageParams(type=kind, message=for_editor(message))
        )

    def log_paid(self, model: str, route: str, usage: Usage) -> None:
        """Every cent is visible: the editor's log shows what each paid answer cost."""
        if usage.cost_usd <= 0:
            return
        self.server.window_log_message(
            lsp.LogMessageParams(
                type=lsp.MessageType.Info,
                message=for_editor(
                    f"aiguilleur: {model} via {route}: {usage.prompt_tokens} tokens in, "
                    f"{usage.completion_tokens} out, ${usage.cost_usd:.6f}"
                ),
            )
        )

    def show_config_problems(self) -> None:
        problems = self.loaded.problems
        if problems:
            lines = "\n".join(p.describe() for p in problems)
            self.show(f"aiguilleur: configuration problems (defaults used):\n{lines}")
            for p in problems:
                log.warning("config.problem %s", p.describe())
        untrusted = self.loaded.untrusted_message()
        if untrusted is not None and untrusted not in self._told:
            self._told.add(untrusted)  # once per session, unless what is ignored changes
            log.info(
                "config.untrusted file=%s ignored=%d",
                self.loaded.workspace_file,
                len(self.loaded.ignored),
            )
            self.show(f"aiguilleur: {untrusted}")

    # -- model loading ----------------------------------------------------------------

    def _supports_progress(self) -> bool:
        window = self.server.client_capabilities.window
        return bool(window and window.work_done_progress)

    async def start_runtime(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            choice = await asyncio.to_thread(self.runtime.start, self._loaded_from_thread)
            await self.runtime.start_remote()
        finally:
            self.runtime_started.set()
        if choice.path is not None and self._supports_progress():
            token = f"aiguilleur-load-{uuid.uuid4().hex[:8]}"
            try:
                await self.server.work_done_progress.create_async(token)
            except Exception as error:  # a client may refuse: loading goes on without a bar
                log.debug("progress.create_failed error=%s", error)
                return
            self._progress_token = token
            self.server.work_done_progress.begin(
                token,
                lsp.WorkDoneProgressBegin(
                    title="aiguilleur",
                    message=f"loading {Path(choice.path).name}",
                    cancellable=False,
                ),
            )
            if self.runtime.engine is None or self.runtime.engine.loaded.done():
                self._end_progress()

    def encoding(self) -> str:
        negotiated = self.server.workspace.position_encoding
        return str(getattr(negotiated, "value", negotiated) or "utf-16")

    async def ready(self) -> bool:
        """Wait (bounded) until discovery and the remote routes are set up, and apply
        settings files that changed since they were read."""
        if not self.runtime_started.is_set():
            try:
                await asyncio.wait_for(self.runtime_started.wait(), STARTUP_WAIT_S)
            except TimeoutError:
                return False
        await self.sync_config()
        return True

    def _problem_from_thread(self, message: str) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: shutting down
                self.loop.call_soon_threadsafe(self.show, f"aiguilleur: {message}")

    def _loaded_from_thread(self, info: ModelInfo | None, error: str | None) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._on_loaded, info, error)

    def _end_progress(self) -> None:
        if self._progress_token is None:
            return
        token, self._progress_token = self._progress_token, None
        info = self.runtime.model_info
        message = f"{info.name} ready" if info else "no local model"
        self.server.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message))

    def _on_loaded(self, info: ModelInfo | None, error: str | None) -> None:
        self._end_progress()
        if info is not None:
            log.info(
                "model.loaded name=%s ms=%.0f fim=%s",
                info.name,
                info.load_ms,
                info.fim.source if info.fim else None,
            )
            if info.fim is None:
                self.show(
                    f"aiguilleur: {info.name} has no fill-in-the-middle tokens, so it cannot "
                    "complete code. Use a code model such as Qwen2.5-Coder (`aiguilleur pull`)."
                )
        elif error and not self._told_no_model:
            self._told_no_model = True
            self.show(f"aiguilleur: no local completions: {error}")

    # -- config -----------------------------------------------------------------------

    def load_config(self) -> LoadedConfig:
        self._files_seen = self._files_now()
        self.loaded = self.layers.load()
        return self.loaded

    def _files_now(self) -> tuple[tuple[int, int, int] | None, ...]:
        seen: list[tuple[int, int, int] | None] = []
        for path in self.layers.watched_files():
            try:
                st = path.stat()
            except OSError:
                seen.append(None)
            else:
                seen.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(seen)

    async def sync_config(self) -> None:
        """The user file, the workspace file or the trusted files changed on disk (the
        user ran `aiguilleur trust`, a `git pull` changed the workspace file): apply them
        before answering. A few stat calls per request."""
        if self._files_now() != self._files_seen:
            await self.apply_config(files_changed=True)

    async def apply_config(self, files_changed: bool = False) -> None:
        """Reload every layer and apply it (with `files_changed`: only if a settings file
        still differs from what was read). The engine restarts only if its settings
        changed, the remote routes only if keys, routes or caches did."""
        async with self._reloading:
            if files_changed and self._files_now() == self._files_seen:
                return  # another request applied it meanwhile
            log.info("config.reload files_changed=%s", files_changed)
            await self._apply_config()

    async def _apply_config(self) -> None:
        old = self.runtime.config
        self.load_config()
        self.show_config_problems()
        new = self.loaded.config
        await asyncio.to_thread(self.runtime.reconfigure, new, self._loaded_from_thread)
        if (old.keys, old.routes, old.cache) != (new.keys, new.routes, new.cache):
            await self.runtime.start_remote()


def _doc_path(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    return Path(path_of(uri))


def build_server(user_config: Path | None = None) -> LanguageServer:
    server = AiguilleurServer("aiguilleur", __version__, protocol_cls=AiguilleurProtocol)
    session = Session(server, user_config)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: LanguageServer, params: lsp.InitializeParams) -> None:
        root = _doc_path(params.root_uri)
        if root is None and params.workspace_folders:
            root = _doc_path(params.workspace_folders[0].uri)
        session.layers.workspace_root = root
        session.layers.init_options = as_settings(params.initialization_options)
        session.runtime.config = session.load_config().config

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: LanguageServer, params: lsp.InitializedParams) -> None:
        session.show_config_problems()
        await session.start_runtime()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: LanguageServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        session.layers.client_settings = as_settings(params.settings)
        log.info("config.changed_by_editor tables=%s", sorted(session.layers.client_settings))
        await session.apply_config()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        session.completion.note_open(doc.uri, doc.text)
        request = session.completion.prefill_request(doc.uri, doc.text)
        if request is not None:
            session.runtime.prefill(request)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        # pygls has already applied the change to its copy of the document.
        line = None
        for change in params.content_changes:
            if isinstance(change, lsp.TextDocumentContentChangePartial):
                line = change.range.start.line
        session.completion.note_change(params.text_document.uri, line, texts)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        session.completion.forget(params.text_document.uri)

    async def suggest(uri: str, position: lsp.Position) -> Suggestion | None:
        docs = ls_docs()
        doc = docs.get(uri)
        if doc is None:
            return None  # never opened: we only complete what the editor shows
        if not await session.ready():
            return None  # the client never sent `initialized`

        def current_version() -> int | None:
            d = ls_docs().get(uri)
            return None if d is None else d.version

        negotiated = server.workspace.position_encoding
        encoding = getattr(negotiated, "value", negotiated) or "utf-16"
        s = await session.completion.suggest(
            uri,
            doc.source,
            doc.version,
            position.line,
            position.character,
            encoding,
            current_version,
            texts,
        )
        if s is not None and not s.typed_through:
            session.log_paid(s.model, s.route, s.usage)
        return s

    def texts(uri: str) -> str | None:
        d = ls_docs().get(uri)
        return None if d is None else d.source

    def ls_docs() -> dict[str, Any]:
        docs: dict[str, Any] = server.workspace.text_documents
        return docs

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: LanguageServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList:
        s = await suggest(params.text_document.uri, params.position)
        if s is None or not s.text:
            return lsp.InlineCompletionList(items=[])
        pos = lsp.Position(s.line, s.character)
        return lsp.InlineCompletionList(
            items=[lsp.InlineCompletionItem(insert_text=s.text, range=lsp.Range(pos, pos))]
        )

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(resolve_provider=False))
    async def completion(ls: LanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        s = await suggest(params.text_document.uri, params.position)
        items = [] if s is None or not s.text else [completion_item(s)]
        # Incomplete: the client asks again as the user types, and typing through the
        # suggestion is answered without the model.
        return lsp.CompletionList(is_incomplete=True, items=items)

    @server.feature(LAST_COMPLETION)
    def last_completion(ls: LanguageServer, params: Any) -> Any:
        uri = getattr(params, "uri", None) or ""
        s = session.completion.last.get(uri)
        return None if s is None else msgspec.to_builtins(s)

    @server.feature(STATUS)
    def status(ls: LanguageServer, params: Any) -> Any:
        rt = session.runtime
        return {
            "model": msgspec.to_builtins(rt.model_info) if rt.model_info else None,
            "model_problem": rt.load_error,
            "engine": msgspec.to_builtins(rt.engine.stats()) if rt.engine else None,
            "kv": msgspec.to_builtins(kv) if (kv := rt.kv_stats()) else None,
            "config_sources": list(session.loaded.sources),
            "config_problems": [p.describe() for p in session.loaded.problems],
            "workspace_trust": session.loaded.trust.value,
            "ignored_untrusted": [i.describe() for i in session.loaded.ignored],
        }

    action_commands.register(server, session, ls_docs)

    @server.command(USAGE_COMMAND)
    async def usage_command(ls: LanguageServer, *args: Any) -> Any:
        from aiguilleur.config import data_dir
        from aiguilleur.usage import report

        r = await asyncio.to_thread(report, session.runtime.config, data_dir() / "ledger.db", 30)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        spent_today = sum(row.cost_usd for row in r.rows if row.day == today)
        left = "; ".join(f"{b.key} {b.period}: ${b.left_usd:.2f} left" for b in r.budgets)
        if args and isinstance(args[0], dict) and args[0].get("quiet"):
            return msgspec.to_builtins(r)  # a status bar polling: no message
        session.show(
            f"aiguilleur: ${spent_today:.4f} spent today, ${r.total_usd:.4f} in 30 days"
            + (f"; {left}" if left else "")
            + " (`aiguilleur usage` for the details)",
            lsp.MessageType.Info,
        )
        return msgspec.to_builtins(r)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: LanguageServer, params: Any) -> None:
        # Answered at once: the engine stops taking work and saves its live KV state on
        # its own thread; `serve` waits for that and for the disk writes after `exit`.
        session.runtime.stop()

    chat_commands.register(server, session)
    server.aiguilleur_session = session  # type: ignore[attr-defined]
    return server


def completion_item(s: Suggestion) -> lsp.CompletionItem:
    full = s.word + s.text
    first = full.split("\n", 1)[0]
    multi = "\n" in s.text
    label = first.strip() or full.strip().split("\n", 1)[0]
    if len(label) > 60:
        label = label[:57] + "..."
    if multi:
        label += " …"
    start = lsp.Position(s.line, s.word_start)
    end = lsp.Position(s.line, s.character)
    return lsp.CompletionItem(
        label=label,
        kind=lsp.CompletionItemKind.Text,
        detail=f"aiguilleur · {s.model}",
        documentation=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=f"```\n{full}\n```"),
        filter_text=first,
        sort_text="0",
        preselect=True,
        insert_text_format=lsp.InsertTextFormat.PlainText,
        text_edit=lsp.TextEdit(range=lsp.Range(start, end), new_text=full),
    )
