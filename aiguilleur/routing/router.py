"""Route selection: which routes may answer a request, in order. Pure, no I/O.

The caller tries the routes in order and falls back to the next on a refusal (budget,
402/403, 429, repeated 5xx). What is skipped, and why, is returned too, so the user can
be told once ("key 'work' has spent its daily budget; using the local model").
"""

from __future__ import annotations

import msgspec

from aiguilleur.config.settings import Config, RouteConfig
from aiguilleur.types import Backend, RequestKind, Route


class Availability(msgspec.Struct, frozen=True):
    """What the runtime can reach right now."""

    local: bool = False
    local_model: str = ""
    keys: frozenset[str] = frozenset()  # labels whose secret could be read
    exhausted: frozenset[str] = frozenset()  # keys refused for budget or credit lately
    cooling: dict[str, float] = msgspec.field(default_factory=dict)  # route -> until (epoch)


class Selection(msgspec.Struct, frozen=True):
    routes: list[Route]
    skipped: list[tuple[str, str]]  # (route name, why)


def is_free_model(model: str) -> bool:
    """Free OpenRouter models; their providers may train on prompts."""
    return model.endswith(":free") or model == "openrouter/free"


def _why_not(
    r: RouteConfig, config: Config, available: Availability, private: str | None, now: float
) -> str | None:
    if r.backend is Backend.LOCAL:
        return None if available.local else "no local model is loaded"
    if private is not None:
        return f"kept on this machine: {private}"
    if not r.model and r.backend is not Backend.LLAMA_SERVER:
        return "no `model` set"
    if r.backend is Backend.OPENROUTER:
        if not r.key or r.key not in config.keys:
            return f"key {r.key!r} is not defined in [keys] of your user config"
        if r.key not in available.keys:
            return f"key '{r.key}' has no secret (set its `env` variable or `file`)"
        if r.key in available.exhausted:
            return f"key '{r.key}' has no budget or credit left for now"
    elif not r.base_url:
        return f"a {r.backend.value} route needs `base_url`"
    elif r.key and r.key not in config.keys:
        return f"key {r.key!r} is not defined in [keys] of your user config"
    elif r.key and r.key not in available.keys:
        return f"key '{r.key}' has no secret (set its `env` variable or `file`)"
    if is_free_model(r.model) and not r.allow_data_collection:
        return (
            f"{r.model} is free because its providers may train on prompts; set "
            "`allow_data_collection = true` on the route to use it"
        )
    until = available.cooling.get(r.name)
    if until is not None and until > now:
        return f"resting for {until - now:.0f} s more (rate limited, or it failed)"
    return None


def select_routes(
    kind: RequestKind,
    config: Config,
    available: Availability,
    *,
    private: str | None = None,
    now: float = 0.0,
) -> Selection:
    """Routes for a request of `kind`, in the user's order, minus those that cannot or
    may not take it. `private` says why the request must stay local (a private file, a
    secret in the text), if it must."""
    configured: list[RouteConfig] = getattr(config.routes, kind.value, [])
    routes: list[Route] = []
    skipped: list[tuple[str, str]] = []
    for r in configured:
        why = _why_not(r, config, available, private, now)
        if why is not None:
            skipped.append((r.name, why))
            continue
        model = available.local_model if r.backend is Backend.LOCAL and not r.model else r.model
        # A chosen route is the configured one, its model resolved.
        routes.append(Route(**{**msgspec.structs.asdict(r), "model": model}))
    return Selection(routes, skipped)
