"""The runtime: owns the engine (and later the stores and the ledger).

One runtime serves every LSP session of a process; nothing here knows LSP, so the
same object can later live in a shared per-user daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiguilleur.backends.base import Backend, BackendUnavailable
from aiguilleur.backends.llama import EngineSettings, LlamaEngine, ModelInfo
from aiguilleur.backends.models import ModelChoice, discover
from aiguilleur.config import Config, models_dir
from aiguilleur.router import Availability, select_routes
from aiguilleur.types import Completion, Request

log = logging.getLogger(__name__)

LoadCallback = Callable[[ModelInfo | None, str | None], None]


def engine_settings(config: Config) -> EngineSettings:
    return EngineSettings(
        n_ctx=config.local.n_ctx,
        n_batch=config.local.n_batch,
        n_threads=config.local.n_threads,
        reuse_prefix=config.local.reuse_prefix,
    )


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.model: ModelChoice | None = None
        self.engine: LlamaEngine | None = None
        self.model_info: ModelInfo | None = None
        self.load_error: str | None = None

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

        self.engine = LlamaEngine(Path(choice.path), engine_settings(self.config), loaded)
        return choice

    def reconfigure(self, config: Config, on_loaded: LoadCallback | None = None) -> bool:
        """Apply new settings; restart the engine if the model or its context changed."""
        old = self.config
        self.config = config
        if old.local == config.local:
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
        for route in select_routes(request.kind, self.config, self.availability()):
            backend = self._backend(route.backend)
            if backend is None:
                continue
            try:
                return await backend.complete(request)
            except BackendUnavailable as error:
                log.warning("route.unavailable route=%s error=%s", route.name, error)
        return None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
