"""The runtime: owns the engine (and later the stores and the ledger).

One runtime serves every LSP session of a process; nothing here knows LSP, so the
same object can later live in a shared per-user daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiguilleur.backends.base import Backend, BackendUnavailable
from aiguilleur.backends.llama import LlamaEngine
from aiguilleur.backends.llama_model import EngineSettings
from aiguilleur.backends.llama_state import kv_namespace
from aiguilleur.backends.models import ModelChoice, discover
from aiguilleur.cache.kv import KVStateStore, KVStoreStats
from aiguilleur.config import Config, cache_dir, models_dir
from aiguilleur.router import Availability, select_routes
from aiguilleur.types import Completion, ModelInfo, Request

log = logging.getLogger(__name__)

LoadCallback = Callable[[ModelInfo | None, str | None], None]
ProblemCallback = Callable[[str], None]


def engine_settings(config: Config) -> EngineSettings:
    return EngineSettings(
        n_ctx=config.local.n_ctx,
        n_batch=config.local.n_batch,
        n_threads=config.local.n_threads,
        reuse_prefix=config.local.reuse_prefix,
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


class Runtime:
    def __init__(self, config: Config, on_problem: ProblemCallback | None = None) -> None:
        self.config = config
        self.model: ModelChoice | None = None
        self.engine: LlamaEngine | None = None
        self.store: KVStateStore | None = None
        self.model_info: ModelInfo | None = None
        self.load_error: str | None = None
        # Told about trouble worth a message to the user (e.g. the KV cache dir is full).
        self.on_problem = on_problem

    def start(self, on_loaded: LoadCallback | None = None) -> ModelChoice:
        """Find the model and start loading it. Blocking (scans directories): not on the loop."""
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
            self.store = kv_store(self.config, path, self.on_problem)
        except OSError as error:  # the model file vanished between discovery and here
            log.warning("kv.store_unavailable error=%s", error)
        self.engine = LlamaEngine(path, engine_settings(self.config), loaded, store=self.store)
        return choice

    def reconfigure(self, config: Config, on_loaded: LoadCallback | None = None) -> bool:
        """Apply new settings; restart the engine if the model or its context changed."""
        old = self.config
        self.config = config
        if old.local == config.local and old.cache == config.cache:
            return False
        self.close()
        self.engine, self.model_info, self.load_error = None, None, None
        self.start(on_loaded)
        return True

    def availability(self) -> Availability:
        ready = self.engine is not None and self.load_error is None
        name = self.model_info.name if self.model_info else ""
        return Availability(local=ready, local_model=name)

    def _backend(self, name: str) -> Backend | None:
        return self.engine if name == "local" else None

    async def complete(self, request: Request) -> Completion | None:
        """The first route's answer; None when no route can answer."""
        for route in select_routes(request.kind, self.config, self.availability()).routes:
            backend = self._backend(route.backend)
            if backend is None:
                continue
            try:
                return await backend.complete(request)
            except BackendUnavailable as error:
                log.warning("route.unavailable route=%s error=%s", route.name, error)
        return None

    def prefill(self, request: Request) -> None:
        """Warm the KV cache for a document the user is likely to type in next."""
        if self.engine is not None and self.load_error is None:
            self.engine.prefill(request)

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
        if engine is not None:
            engine.close()
            engine.join(timeout)
        if store is not None:
            store.close(timeout)
