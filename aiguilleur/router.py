"""Route selection: which backends may answer a request, in order. Pure, no I/O."""

from __future__ import annotations

import msgspec

from aiguilleur.config import Config
from aiguilleur.types import RequestKind, Route


class Availability(msgspec.Struct, frozen=True):
    """What the runtime can reach right now."""

    local: bool = False
    local_model: str = ""


def select_routes(kind: RequestKind, config: Config, available: Availability) -> list[Route]:
    """Ordered routes for a request; the caller tries each until one answers.

    Only the embedded engine exists so far, and it serves completions; an empty list
    means "no suggestion" (the user has been told how to get a model).
    """
    routes: list[Route] = []
    if kind is RequestKind.COMPLETION and available.local:
        routes.append(Route(name="local", backend="local", model=available.local_model))
    return routes
