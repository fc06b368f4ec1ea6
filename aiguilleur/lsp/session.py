"""The state of one editor connection: its settings layers (workspace, trust, editor
settings), its messages, the loading of the runtime, and its features, built from one
FeatureNeeds (the session is their settings and their editor). The runtime outlives it.

Standalone (`aiguilleur serve --standalone`), the session builds its runtime and its
settings configure it. Over a daemon's shared runtime, the runtime is the daemon's,
built from the user file alone: the session's settings are its policy (routes, privacy,
windows), never the runtime's (model, caches, keys), so no window restarts the engine
for the others."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import uuid
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from aiguilleur.config.loading import ConfigLayers, LoadedConfig
from aiguilleur.config.settings import Config
from aiguilleur.context.index import RepositoryIndex
from aiguilleur.features.actions import ActionsFeature
from aiguilleur.features.chat import ChatFeature
from aiguilleur.features.completion import CompletionFeature
from aiguilleur.features.needs import FeatureNeeds
from aiguilleur.features.uris import path_of
from aiguilleur.lsp.positions import position_at
from aiguilleur.routing.route_loop import SessionRoutes
from aiguilleur.routing.runtime import Runtime
from aiguilleur.sanitize import for_editor
from aiguilleur.tasks import TaskSet
from aiguilleur.types import ModelInfo, Usage

log = logging.getLogger(__name__)

STARTUP_WAIT_S = 30.0


class OpenDocuments:
    """The documents this editor has open, as pygls keeps them in step with its edits."""

    def __init__(self, server: LanguageServer) -> None:
        self._server = server

    def text(self, uri: str) -> str | None:
        doc = self._server.workspace.text_documents.get(uri)
        return None if doc is None else str(doc.source)

    def version(self, uri: str) -> int | None:
        doc = self._server.workspace.text_documents.get(uri)
        return None if doc is None else doc.version


class Session:
    """State of one editor connection. The runtime (engine, stores) outlives it."""

    def __init__(
        self,
        server: LanguageServer,
        user_config: Path | None = None,
        shared: Runtime | None = None,
    ) -> None:
        self.server = server
        self.shared = shared is not None
        self.layers = ConfigLayers(user_file=user_config)
        self._files_seen: tuple[tuple[int, int, int] | None, ...] = ()
        self.loaded: LoadedConfig = self.load_config()
        self._told: set[str] = set()
        self._reloading = asyncio.Lock()
        self.runtime = shared or Runtime(self.loaded.config, self._problem_from_thread)
        self.routes = SessionRoutes(self.runtime, self)
        # Every feature is built the same way, from one object of what it may use.
        self.documents = OpenDocuments(server)
        needs = FeatureNeeds(
            settings=self,
            routes=self.routes,
            documents=self.documents,
            editor=self,
            outcomes=self.runtime.acceptance,
        )
        self.completion = CompletionFeature(needs)
        self.actions = ActionsFeature(needs)
        self.chat = ChatFeature(needs)
        self.loop: asyncio.AbstractEventLoop | None = None
        # The workspace's repository index, shared with every session of the runtime.
        self._index: RepositoryIndex | None = None
        self._tasks = TaskSet()
        self._told_no_model = False
        self._progress_token: str | None = None
        # Set once discovery has run and the engine (if any) exists: a request that arrives
        # earlier, as the first one after `initialized` often does, waits instead of
        # being answered empty for want of a backend.
        self.runtime_started = asyncio.Event()
        if self.shared:
            self.runtime_started.set()  # the daemon started it before taking connections
        # Cleared while this window's settings replace the engine: a request waits for the
        # new one rather than reaching the old one as it shuts down.
        self.engine_settled = asyncio.Event()
        self.engine_settled.set()

    @property
    def workspace_root(self) -> Path | None:
        return self.layers.workspace_root

    @property
    def index(self) -> RepositoryIndex | None:
        return self._index

    @property
    def policy(self) -> Config:
        """This session's settings, all layers merged: its routes, privacy, windows."""
        return self.loaded.config

    # -- what the features ask of the editor ------------------------------------------

    async def replace(self, uri: str, base: str, start: int, end: int, text: str) -> bool:
        encoding = self.encoding()
        rng = lsp.Range(position_at(base, start, encoding), position_at(base, end, encoding))
        edit = lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(rng, text)]})
        result = await self.server.workspace_apply_edit_async(
            lsp.ApplyWorkspaceEditParams(edit=edit, label="aiguilleur chat")
        )
        return bool(result.applied)

    # -- messages -------------------------------------------------------------------

    def tell(self, message: str) -> None:
        """What concerns this window (a route of its request failed, the runtime has a
        problem): once per distinct message."""
        if message not in self._told:
            self._told.add(message)
            self.show(f"aiguilleur: {message}")

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
        if self.shared:
            for problem in self.runtime.problems:  # said before this window connected
                self.tell(problem)
            # The daemon started the runtime; its model may still be loading, as it is for
            # the window that started the daemon: that window sees the same bar.
            if self.runtime.model_info is None and self.runtime.load_error:
                self._on_loaded(None, self.runtime.load_error)
                return
            engine = self.runtime.engine
            if engine is None or engine.loaded.done():
                return
            engine.loaded.add_done_callback(self._load_done)
            await self._show_loading(engine.model_path)
            return
        try:
            choice = await asyncio.to_thread(self.runtime.start, self._loaded_from_thread)
            await self.runtime.start_remote()
        finally:
            self.runtime_started.set()
        if choice.path is not None:
            await self._show_loading(Path(choice.path))

    def _load_done(self, done: concurrent.futures.Future[ModelInfo]) -> None:
        error = done.exception()
        self._loaded_from_thread(None if error else done.result(), str(error) if error else None)

    async def _show_loading(self, model: Path) -> None:
        """A progress bar while the model loads (ended by _on_loaded)."""
        if not self._supports_progress():
            return
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
                title="aiguilleur", message=f"loading {model.name}", cancellable=False
            ),
        )
        if self.runtime.engine is None or self.runtime.engine.loaded.done():
            self._end_progress()

    # -- the repository index ---------------------------------------------------------

    async def start_index(self) -> None:
        """Open the workspace's index (the runtime's, if another window opened it) and,
        when this session opened it first, bring it up to date in the background with a
        progress bar."""
        root = self.workspace_root
        if root is None or not self.policy.index.enabled:
            return
        globs = tuple(self.policy.privacy.private)
        try:
            index, new = await asyncio.to_thread(self.runtime.workspace_index, root, globs)
        except Exception as error:  # an unusable cache dir: no index, suggestions go on
            log.warning("index.unavailable root=%s error=%s", root, error)
            return
        self._index = index
        if new:
            self._tasks.spawn(self._refresh_index(index), "index the workspace")

    async def _refresh_index(self, index: RepositoryIndex) -> None:
        token = await self._begin_progress(f"indexing {index.root.name}")
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:  # on the indexing thread
            if token is not None and total:
                pct = done * 100 // total
                report = lsp.WorkDoneProgressReport(message=f"{done}/{total} files", percentage=pct)
                loop.call_soon_threadsafe(self.server.work_done_progress.report, token, report)

        done = "stopped"
        try:
            stats = await asyncio.to_thread(index.refresh, progress)
            done = f"{stats.files} files, {stats.definitions} definitions"
        finally:
            if token is not None:
                self.server.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=done))
        self.prefill_last()

    def prefill_last(self) -> None:
        """The repository block of the file being edited may have changed (the index was
        built or a file saved): when it did, evaluate the new prompt head while the
        editor is idle, rather than at the next keystroke. When it did not, nothing is
        evaluated: a prefill would replace the live context's tail for nothing."""
        uri = self.completion.last_uri
        text = self.documents.text(uri) if uri else None
        before = self.completion.block.current
        request = self.completion.prefill_request(uri, text) if uri and text else None
        if request is not None and request.context.repository != before:
            self.runtime.prefill(request)

    async def note_saved(self, uri: str) -> None:
        """A file was saved, created, changed or deleted on disk: the index follows."""
        index = self._index
        if index is None or not uri.startswith("file:"):
            return
        if await asyncio.to_thread(index.update, Path(path_of(uri))):
            self.prefill_last()

    async def _begin_progress(self, message: str) -> str | None:
        """A work-done progress bar, or None when the editor has none or refuses one."""
        if not self._supports_progress():
            return None
        token = f"aiguilleur-{uuid.uuid4().hex[:8]}"
        try:
            await self.server.work_done_progress.create_async(token)
        except Exception as error:
            log.debug("progress.create_failed error=%s", error)
            return None
        self.server.work_done_progress.begin(
            token, lsp.WorkDoneProgressBegin(title="aiguilleur", message=message, percentage=0)
        )
        return token

    def encoding(self) -> str:
        """The position encoding negotiated with this editor (utf-16 when it said none):
        the one place positions' units are decided."""
        negotiated = self.server.workspace.position_encoding
        return str(getattr(negotiated, "value", negotiated) or "utf-16")

    async def routes_ready(self, wait_s: float = 2.0) -> None:
        """Wait briefly for the routes to be set up (a menu tells the price of a paid
        route's action); never for a model to load."""
        if not self.runtime_started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.runtime_started.wait(), wait_s)

    async def ready(self) -> bool:
        """Wait (bounded) until discovery and the remote routes are set up, and apply
        settings files that changed since they were read."""
        for started in (self.runtime_started, self.engine_settled):
            if not started.is_set():
                try:
                    await asyncio.wait_for(started.wait(), STARTUP_WAIT_S)
                except TimeoutError:
                    return False
        await self.sync_config()
        return True

    def _problem_from_thread(self, message: str) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: shutting down
                self.loop.call_soon_threadsafe(self.tell, message)

    def _loaded_from_thread(self, info: ModelInfo | None, error: str | None) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._on_loaded, info, error)

    def _end_progress(self, info: ModelInfo | None = None) -> None:
        if self._progress_token is None:
            return
        token, self._progress_token = self._progress_token, None
        info = info or self.runtime.model_info
        message = f"{info.name} ready" if info else "no local model"
        self.server.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message))

    def _on_loaded(self, info: ModelInfo | None, error: str | None) -> None:
        self._end_progress(info)
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

    def tell_if_runtime_settings_differ(self) -> None:
        """Over a shared runtime, this window's layers set the runtime's own settings
        differently from the user file: said once."""
        if not self.shared:
            return
        mine, host = self.policy, self.runtime.config
        differ = [
            name
            for name in ("local", "cache", "keys")
            if getattr(mine, name) != getattr(host, name)
        ]
        message = (
            f"aiguilleur: [{'], ['.join(differ)}] here differ from your user config; the "
            "shared daemon uses the user config's (one model for every window). Change "
            "them there and run `aiguilleur daemon stop`, or start this editor's server "
            "with `aiguilleur serve --standalone`."
        )
        if differ and message not in self._told:
            self._told.add(message)
            self.show(message, lsp.MessageType.Info)

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
        if self.shared:
            self.tell_if_runtime_settings_differ()
            return
        if (old.local, old.cache) != (new.local, new.cache):
            self.engine_settled.clear()
        try:
            await asyncio.to_thread(self.runtime.reconfigure, new, self._loaded_from_thread)
        finally:
            self.engine_settled.set()
        if (old.keys, old.routes, old.cache) != (new.keys, new.routes, new.cache):
            await self.runtime.start_remote()
