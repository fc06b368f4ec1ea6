"""The remote routes' memory of failures: what a refusal does to the key it names."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from aiguilleur.config.settings import Config
from aiguilleur.errors import BudgetRefused
from aiguilleur.remote.routes import RemoteRoutes
from aiguilleur.types import Backend, Route


def test_a_busy_budget_sends_one_request_elsewhere_and_keeps_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OR_KEY", "sk-or-v1-secret")
    paid = {"name": "cloud", "backend": "openrouter", "key": "work", "model": "a/b"}
    config = msgspec.convert(
        {"keys": {"work": {"env": "OR_KEY"}}, "routes": {"completion": [paid]}}, Config
    )
    remote = RemoteRoutes(config, tmp_path / "ledger.db", tmp_path / "prices.json", [].append)
    route = Route("cloud", Backend.OPENROUTER, model="a/b", key="work")
    try:
        busy = BudgetRefused("work", "daily", 1.0, 0.9, 0.2, in_flight=0.8)
        told = remote.note_failure(route, busy, now=100.0)
        assert remote.exhausted_keys(100.0) == frozenset()
        assert told is not None and "not spent" in told
        # Dearer than what is left, while a shorter prompt would fit: not spent either.
        dear = BudgetRefused("work", "daily", 1.0, 0.9, 0.2, in_flight=0.05, smallest=0.1)
        told = remote.note_failure(route, dear, now=100.0)
        assert remote.exhausted_keys(100.0) == frozenset()
        assert told is not None and "almost spent" in told and "not spent" in told
        spent = BudgetRefused("work", "daily", 1.0, 0.9, 0.2, in_flight=0.05, smallest=0.2)
        remote.note_failure(route, spent, now=100.0)
        assert remote.exhausted_keys(100.0) == {"work"}
    finally:
        remote.ledger.close()
