"""The backend interface and the errors every backend raises."""

from __future__ import annotations

from typing import Protocol

from aiguilleur.types import Completion, Request


class BackendError(Exception):
    """A backend could not answer; the router may try the next route."""


class BackendUnavailable(BackendError):
    """No model is loaded or reachable (missing model file, failed load, no network)."""


class Cancelled(BackendError):
    """The client cancelled the request; generation stopped."""


class Superseded(Cancelled):
    """A newer request for the same document replaced this one (latest wins)."""


class Backend(Protocol):
    name: str

    async def complete(self, request: Request) -> Completion: ...

    def close(self) -> None: ...
