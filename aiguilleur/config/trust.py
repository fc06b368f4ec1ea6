"""What settings that come with a workspace may change. Pure: no I/O.

A workspace file (`.aiguilleur.toml`) comes with any cloned repository. Until the user
trusts it (`aiguilleur trust`, pinned to its content), it may only make things safer or
tune local behaviour: add private globs, turn secret detection on, pick among the
user's routes, lower windows and token counts. Everything else it asks is dropped here
and listed, so the user can be told what was ignored and how to allow it.

Whatever the trust, keys and budgets come from the user file alone, and neither
`[cache]` nor `local.models_dir` (which decide where we write) come from a workspace:
loading.py strips those before this module sees the layer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from aiguilleur.config.settings import Config, RouteConfig
from aiguilleur.types import Backend


class TrustState(StrEnum):
    NONE = "none"  # no workspace file
    TRUSTED = "trusted"  # trusted, and unchanged since
    UNTRUSTED = "untrusted"  # never trusted
    CHANGED = "changed"  # trusted once; its content changed since


class Power(StrEnum):
    """What an untrusted workspace may do with one setting."""

    LOWER = "may only be lowered by an untrusted workspace"
    ENABLE = "may only be turned on by an untrusted workspace"
    ADD = "is added to yours, never replaces it"
    TRUST = "needs a trusted workspace"


# Every setting an untrusted workspace may touch at all; any other (new settings too)
# needs trust: the rule fails closed.
POWERS: dict[tuple[str, str], Power] = {
    **{
        ("completion", key): Power.LOWER
        for key in (
            "prefix_tokens",
            "suffix_tokens",
            "max_tokens",
            "extra_tokens",
            "extra_chunks",
            "extra_chunk_lines",
            "repository_tokens",
            "time_budget_ms",
            "temperature",
            "prefetch",  # off is lower: less work done unasked
        )
    },
    ("actions", "max_tokens"): Power.LOWER,
    ("actions", "context_lines"): Power.LOWER,
    ("actions", "repository_tokens"): Power.LOWER,
    ("chat", "max_tokens"): Power.LOWER,
    ("chat", "repository_tokens"): Power.LOWER,
    ("index", "enabled"): Power.LOWER,  # off is lower: less work done unasked
    ("privacy", "private"): Power.ADD,
    ("privacy", "detect_secrets"): Power.ENABLE,
}

# Why a setting that needs trust does, said to the user.
_WHY_TRUST = {
    "local": "decides which model file is loaded, and how",
    "chat": "decides where chats are written",
    "prompts": "decides what is sent to the model",
}

# Route fields that say where a request goes and who pays: a workspace that picks one of
# the user's routes may not change them.
_WHERE = ("backend", "model", "key", "base_url")


class Ignored(msgspec.Struct, frozen=True):
    """A setting of an untrusted workspace that was not applied, and why."""

    key: str
    value: str
    why: str

    def describe(self) -> str:
        return f"{self.key} = {self.value}: {self.why}"


def _show(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _feature_limits(below: Config, feature: str) -> tuple[int, float]:
    """(max_tokens, temperature) a route of `feature` gets when it sets neither."""
    if feature == "completion":
        return below.completion.max_tokens, below.completion.temperature
    if feature == "code_action":
        return below.actions.max_tokens, 0.0
    return below.chat.max_tokens, 0.0


def pick_routes(layer: dict[str, Any], below: Config) -> dict[str, Any]:
    """A workspace route that names one of the user's routes (of the same feature) is that
    route, with the fields the workspace gives on top: `{name = "local"}` picks the local
    route, `{name = "cloud", max_tokens = 16}` the user's cloud route with fewer tokens."""
    routes = layer.get("routes")
    if not isinstance(routes, dict):
        return layer
    picked: dict[str, Any] = {}
    for feature, entries in routes.items():
        mine = {r.name: r for r in getattr(below.routes, feature, [])}
        picked[feature] = [
            {**msgspec.to_builtins(mine[e["name"]]), **e} if e.get("name") in mine else e
            for e in entries
        ]
    return {**layer, "routes": picked}


def restrict(layer: dict[str, Any], below: Config) -> tuple[dict[str, Any], list[Ignored]]:
    """What an untrusted workspace `layer` (already type-checked, its routes picked) may
    apply on top of `below` (the defaults and the user's settings), and what it may not."""
    kept: dict[str, Any] = {}
    ignored: list[Ignored] = []
    for table, value in layer.items():
        if table == "routes":
            for feature, entries in value.items():
                routes, dropped = _restrict_routes(feature, entries, below)
                ignored += dropped
                # Nothing left of the workspace's list: the user's own list stands.
                if routes or not entries:
                    kept.setdefault("routes", {})[feature] = routes
            continue
        if table == "prompts" or not isinstance(value, dict):
            if value != msgspec.to_builtins(getattr(below, table, None)):
                ignored.append(Ignored(table, _show(value), _needs_trust(table)))
            continue
        for key, wanted in value.items():
            current = getattr(getattr(below, table), key)
            why = _refusal(POWERS.get((table, key), Power.TRUST), wanted, current, table)
            if why is None:
                kept.setdefault(table, {})[key] = wanted
            else:
                ignored.append(Ignored(f"{table}.{key}", _show(wanted), why))
    return kept, ignored


def _needs_trust(table: str) -> str:
    reason = _WHY_TRUST.get(table)
    return Power.TRUST.value + (f" (it {reason})" if reason else "")


def _refusal(power: Power, wanted: Any, current: Any, table: str) -> str | None:
    """Why `wanted` may not replace `current` under `power`; None if it may."""
    if wanted == current or power is Power.ADD:
        return None
    if power is Power.LOWER:
        ok = isinstance(wanted, int | float) and isinstance(current, int | float)
        return None if ok and wanted <= current else f"{power.value} (yours: {_show(current)})"
    if power is Power.ENABLE:
        return None if wanted is True else power.value
    return _needs_trust(table)


def _restrict_routes(
    feature: str, entries: list[dict[str, Any]], below: Config
) -> tuple[list[dict[str, Any]], list[Ignored]]:
    """An untrusted workspace may use local routes, and the user's own routes of this
    feature, never one of its own that sends code elsewhere; and it may not try a remote
    route earlier than the user's list does (dropping the local route the user tries
    first would send everything out)."""
    mine: list[RouteConfig] = list(getattr(below.routes, feature, []))
    names = [r.name for r in mine]
    max_tokens, temperature = _feature_limits(below, feature)
    kept: list[dict[str, Any]] = []
    ignored: list[Ignored] = []
    for entry in entries:
        name = str(entry.get("name", ""))
        user = mine[names.index(name)] if name in names else None
        if user is None:
            backend = entry.get("backend", Backend.LOCAL.value)
            why = None if backend == Backend.LOCAL.value else _foreign(entry)
        else:
            why = _narrowing(entry, user, max_tokens, temperature)
            if why is None and user.backend is not Backend.LOCAL:
                earlier = names[: names.index(name)]
                skipped = [n for n in earlier if n not in {str(k.get("name")) for k in kept}]
                if skipped:
                    why = (
                        f"would be tried before your route '{skipped[0]}', which your list "
                        "tries first; an untrusted workspace may not send more out"
                    )
        if why is None:
            kept.append(entry)
        else:
            ignored.append(Ignored(f"routes.{feature}", f"'{name}'", why))
    return kept, ignored


def _foreign(entry: dict[str, Any]) -> str:
    where = entry.get("base_url") or entry.get("model") or "a server"
    return (
        f"a route of the repository's own ({entry.get('backend')}, to {where}): an "
        "untrusted workspace may only pick among your own routes"
    )


def _narrowing(
    entry: dict[str, Any], user: RouteConfig, max_tokens: int, temperature: float
) -> str | None:
    """Why `entry`, which picks the user's route `user`, asks for more than it; None if
    it only narrows it."""
    for field in _WHERE:
        wanted = entry.get(field, getattr(user, field))
        if wanted != getattr(user, field):
            mine = _show(getattr(user, field))
            return f"changes your route's {field} to {_show(wanted)} (yours: {mine})"
    if entry.get("allow_data_collection") and not user.allow_data_collection:
        return "would let providers train on your code (allow_data_collection)"
    limits = {
        "max_tokens": user.max_tokens or max_tokens,
        "temperature": user.temperature if user.temperature is not None else temperature,
        "max_price": user.max_price,
    }
    for field, limit in limits.items():
        wanted = entry.get(field)
        if wanted is None or wanted == getattr(user, field):
            continue
        if limit is None:  # max_price: the user set none, so only priced models go
            return "would allow models whose price is unknown (max_price)"
        if wanted > limit:
            return f"may only lower your route's {field} (yours: {_show(limit)})"
    return None
