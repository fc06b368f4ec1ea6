"""What things cost and what is left: OpenRouter's model prices (kept a day on disk) and
each key's remaining limit as OpenRouter reports it, refreshed in the background. The
Spender of each key reads them here before it reserves a budget."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from aiguilleur.errors import BackendError
from aiguilleur.remote.openrouter import ModelPrice, OpenRouterClient, parse_prices

log = logging.getLogger(__name__)

PRICES_TTL_S = 24 * 3600
KEY_INFO_EVERY_S = 300.0


class PriceBook:
    def __init__(
        self, prices_file: Path | None = None, prices: Mapping[str, ModelPrice] | None = None
    ) -> None:
        self._file = prices_file
        self.prices: dict[str, ModelPrice] = dict(prices or {})
        self._remaining: dict[str, float | None] = {}
        # Set once the first refresh is over (or there is nothing to refresh).
        self.refreshed = asyncio.Event()

    def price(self, model: str) -> ModelPrice | None:
        return self.prices.get(model)

    def remaining(self, key: str) -> float | None:
        """What OpenRouter says `key` has left under its own limit (None: no limit known)."""
        return self._remaining.get(key)

    async def ready(self, wait_s: float) -> None:
        """The first request after start waits up to `wait_s` for prices on their way."""
        if not self.prices and not self.refreshed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.refreshed.wait(), wait_s)

    async def load_cached(self) -> None:
        cached = await asyncio.to_thread(self._cached)
        self.prices = cached or {}

    def _cached(self) -> dict[str, ModelPrice] | None:
        if self._file is None:
            return None
        try:
            if time.time() - self._file.stat().st_mtime > PRICES_TTL_S:
                return None
            return parse_prices(json.loads(self._file.read_bytes()))
        except (OSError, ValueError):
            return None

    async def refresh(self, clients: Mapping[str, OpenRouterClient]) -> None:
        """Prices when the day-old copy is gone, and each key's remaining limit."""
        client = next(iter(clients.values()), None)
        if client is None:
            return
        if not self.prices or await asyncio.to_thread(self._cached) is None:
            try:
                body = await client.get_json("/models")
                self.prices = parse_prices(body)
                if self._file is not None:
                    self._file.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self._file.with_suffix(".tmp")
                    tmp.write_bytes(msgspec.json.encode(body))
                    tmp.replace(self._file)
            except (BackendError, OSError) as error:
                log.warning("openrouter.prices_failed error=%s", error)
        for label, c in clients.items():
            try:
                info = await c.key_info()
                self._remaining[label] = info.limit_remaining
            except BackendError as error:
                log.info("openrouter.key_info_failed key=%s error=%s", label, error)

    async def keep_fresh(self, clients: Mapping[str, OpenRouterClient]) -> None:
        """Refresh now and every KEY_INFO_EVERY_S, for as long as the task runs."""
        while True:
            try:
                await self.refresh(clients)
            finally:
                self.refreshed.set()
            await asyncio.sleep(KEY_INFO_EVERY_S)
