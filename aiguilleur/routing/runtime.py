"""The runtime, the host of a process: the model and its engine, the KV state store,
the remote routes (clients and spenders per key, the ledger), built from the user's own
settings only.

One runtime serves every session of a process (all the windows of a daemon). Requests
reach it through route_loop.SessionRoutes, which brings each session's policy along;
nothing here knows LSP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings, ModelLoads, model_loads
from aiguilleur.backends.llama_state import kv_namespace
from aiguilleur.backends.models import ModelChoice, discover
from aiguilleur.cache.kv import KVStateStore, KVStoreStats
from aiguilleur.config.homes import data_dir
from aiguilleur.config.loading import cache_dir, models_dir
from aiguilleur.config.settings import Config
from aiguilleur.context.index import ParserProcess, RepositoryIndex, store_dir
from aiguilleur.errors import (
    BackendUnavailable,
)
from aiguilleur.remote.acceptance import AcceptanceLog
from aiguilleur.remote.routes import RemoteRoutes
from aiguilleur.routing.router import Availability
from aiguilleur.types import (
    Backend,
    ModelInfo,
    Request,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# An engine being replaced finishes its load (llama.cpp cannot stop one) and saves its
# state first: two models in memory at once is what the wait avoids.
RESTART_WAIT_S = 300.0
LoadCallback = Callable[[ModelInfo | None, str | None], None]
ProblemCallback = Callable[[str], None]


def engine_settings(config: Config) -> EngineSettings:
    return EngineSettings(
        n_ctx=config.local.n_ctx,
        n_batch=config.local.n_batch,
        n_threads=config.local.n_threads,
        reuse_prefix=config.local.reuse_prefix,
        speculative=config.local.speculative,
        adapt_to_load=config.local.adapt_to_load,
    )


def kv_store(
    config: Config, model: Path, on_problem: ProblemCallback | None
) -> KVStateStore | None:
    """The KV state store for `model`, or None when both tiers are configured off."""
    ram = max(0, config.cache.kv_ram_mb) << 20
    disk = max(0, config.cache.kv_disk_mb) << 20
    if not ram and not disk:
        return None
    directory = cache_dir(config) / "kv" if disk else None
    return KVStateStore(kv_namespace(model), directory, ram, disk, on_problem)


def _has_remote_routes(config: Config) -> bool:
    return any(r.backend.remote for r in config.routes.every())


def _uses_local(config: Config) -> bool:
    return any(r.backend is Backend.LOCAL for r in config.routes.every())


class Runtime:
    def __init__(self, config: Config, on_problem: ProblemCallback | None = None) -> None:
        self.config = config
        self.model: ModelChoice | None = None
        self.engine: LlamaEngine | None = None
        # No route of the user file uses the local model: it is not loaded (no memory, no
        # core, no battery spent) until a request is routed to it after all (a
        # workspace's local route); that request falls back while it loads.
        self.deferred = False
        self._deferred_callback: LoadCallback | None = None
        # A file opened before the engine exists (the editor sends didOpen right after
        # `initialized`, while the engine starts): prefilled once it does.
        self._early_prefill: Request | None = None
        self.store: KVStateStore | None = None
        self.model_info: ModelInfo | None = None
        self.load_error: str | None = None
        # Told about trouble worth a message to every user of this runtime (e.g. the KV
        # cache dir is full); kept, for the windows that connect later.
        self.on_problem = on_problem
        self.problems: list[str] = []
        self.remote: RemoteRoutes | None = None
        # What became of the suggestions of every session (counted in the ledger's file).
        self.acceptance = AcceptanceLog(data_dir() / "ledger.db")
        # start and reconfigure run in threads of their callers' (a window's `initialized`
        # and its settings can come together): one at a time, so that one engine at most
        # exists, and a restart waits for the engine it replaces to be gone.
        self._engine_lock = threading.RLock()
        # The repository index of each workspace a session opened, shared by them all.
        self.indexes: dict[Path, RepositoryIndex] = {}
        self._parser = ParserProcess()  # one for every index, started on first use
        self._index_lock = threading.Lock()

    async def start_remote(self) -> None:
        """Keys, clients and the spend ledger for the remote routes; prices and key
        limits are fetched in the background. Call on the event loop."""
        old, self.remote = self.remote, None
        if old is not None:
            await old.close()
        if not self.config.keys and not _has_remote_routes(self.config):
            return
        remote = await asyncio.to_thread(
            RemoteRoutes,
            self.config,
            data_dir() / "ledger.db",
            cache_dir(self.config) / "openrouter-models.json",
            self._say,
        )
        self.remote = remote
        await remote.start()

    def tell_every_window(self, message: str) -> None:
        """A message for every window of this runtime, those that connect later too."""
        self._say(message)

    def _say(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)
        if self.on_problem is not None:
            self.on_problem(message)

    def start(self, on_loaded: LoadCallback | None = None) -> ModelChoice:
        """Find the model and start loading it. Blocking (scans directories): not on the loop."""
        with self._engine_lock:
            return self._start(on_loaded)

    def _start(self, on_loaded: LoadCallback | None, needed: bool = False) -> ModelChoice:
        if not needed and not _uses_local(self.config):
            self.deferred, self._deferred_callback = True, on_loaded
            log.info("model.deferred reason=no route of the user config is local")
            return ModelChoice(None, "not loaded: no route uses the local model")
        self.deferred = False
        choice = discover(
            self.config.local.model, models_dir(self.config), self.config.local.search_common_places
        )
        self.model = choice
        log.info("model.choice path=%s how=%s", choice.path, choice.how)
        if choice.path is None:
            self.load_error = choice.problem
            if on_loaded:
                on_loaded(None, choice.problem)
            return choice

        def loaded(info: ModelInfo | None, error: str | None) -> None:
            self.model_info, self.load_error = info, error
            if on_loaded:
                on_loaded(info, error)

        path = Path(choice.path)
        try:
            self.store = kv_store(self.config, path, self._say)
        except OSError as error:  # the model file vanished between discovery and here
            log.warning("kv.store_unavailable error=%s", error)
        self.engine = LlamaEngine(path, engine_settings(self.config), loaded, store=self.store)
        if self._early_prefill is not None:
            self.engine.prefill(self._early_prefill)
            self._early_prefill = None
        return choice

    def reconfigure(self, config: Config, on_loaded: LoadCallback | None = None) -> bool:
        """Apply new settings; restart the engine if the model or its context changed."""
        with self._engine_lock:
            old = self.config
            self.config = config
            if self.deferred:
                if not _uses_local(config):
                    return False
                self._start(on_loaded)
                return True
            if old.local == config.local and old.cache == config.cache:
                return False
            self.close(timeout=RESTART_WAIT_S)
            self.engine, self.model_info, self.load_error = None, None, None
            self._start(on_loaded)
            return True

    def availability(self, now: float = 0.0) -> Availability:
        # A deferred model counts as there: a request routed to it starts the load.
        ready = (self.engine is not None and self.load_error is None) or self.deferred
        name = self.model_info.name if self.model_info else ""
        remote = self.remote
        if remote is None:
            return Availability(local=ready, local_model=name)
        return Availability(
            local=ready,
            local_model=name,
            keys=remote.usable_keys(),
            exhausted=remote.exhausted_keys(now),
            cooling=dict(remote.cooling),
        )

    def local_engine(self) -> LlamaEngine:
        """The engine, for a route that needs it; BackendUnavailable when no model is
        loaded."""
        if self.deferred:
            self.deferred = False
            callback = self._deferred_callback
            threading.Thread(
                target=lambda: self._start_needed(callback), name="model-load", daemon=True
            ).start()
            raise BackendUnavailable(
                "the local model is loading: no route of your user config uses it, so it "
                "was not loaded at start"
            )
        if self.engine is None or self.load_error is not None:
            raise BackendUnavailable("no local model is loaded")
        return self.engine

    def _start_needed(self, on_loaded: LoadCallback | None) -> None:
        with self._engine_lock:
            if self.engine is None:
                self._start(on_loaded, needed=True)

    def remote_routes(self) -> RemoteRoutes:
        """The remote routes; BackendUnavailable when none are set up."""
        if self.remote is None:
            raise BackendUnavailable("the remote routes are not set up")
        return self.remote

    def prefill(self, request: Request) -> None:
        """Warm the KV cache for a document the user is likely to type in next."""
        if self.engine is None:
            self._early_prefill = request
        elif self.load_error is None:
            self.engine.prefill(request)

    def workspace_index(
        self, root: Path, private_globs: tuple[str, ...]
    ) -> tuple[RepositoryIndex, bool]:
        """The index of the workspace `root`, loaded from its store on first use, and
        whether this call created it (its caller then brings it up to date). Blocking:
        call it from a thread."""
        root = root.resolve()
        with self._index_lock:
            index = self.indexes.get(root)
            if index is not None:
                return index, False
            index = RepositoryIndex(
                root,
                store_dir(cache_dir(self.config), root),
                private_globs=private_globs,
                parser=self._parser,
            )
            self.indexes[root] = index
            return index, True

    def model_loads(self) -> ModelLoads:
        """Models loaded by this process, and how many are in memory."""
        return model_loads()

    def kv_stats(self) -> KVStoreStats | None:
        return self.store.stats() if self.store is not None else None

    def stop(self) -> None:
        """Stop taking work; the engine saves its state in the background. Non-blocking."""
        if self.engine is not None:
            self.engine.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the engine (it saves its live state) and write pending states to disk.
        Blocking: call it from a thread, not the event loop."""
        engine, store = self.engine, self.store
        self.store = None
        self.acceptance.flush()
        with self._index_lock:
            indexes, self.indexes = list(self.indexes.values()), {}
        for index in indexes:
            index.close()
        self._parser.close()
        if engine is not None:
            engine.close()
            engine.join(timeout)
        if store is not None:
            store.close(timeout)
