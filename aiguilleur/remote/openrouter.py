"""OpenRouter: the OpenAI-style wire plus what OpenRouter adds: prices per model, the
key's own credit limit, the cost of a generation after the fact, attribution headers, and
provider preferences (no data collection unless a route allows it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from aiguilleur.errors import BackendError, Rejected, Transient
from aiguilleur.remote.openai_compat import OpenAICompatClient

log = logging.getLogger(__name__)

BASE_URL = "https://openrouter.ai/api/v1"
ATTRIBUTION = {
    "HTTP-Referer": "https://github.com/aiguilleur/aiguilleur",
    "X-OpenRouter-Title": "aiguilleur",
    "X-Title": "aiguilleur",  # the older name of the same header
}


class ModelPrice(msgspec.Struct, frozen=True):
    """USD per token (prompt, completion) and per request. None: unknown or variable
    (OpenRouter writes a negative price for those)."""

    model: str
    prompt: float | None
    completion: float | None
    request: float = 0.0
    context_length: int = 0

    @property
    def known(self) -> bool:
        return self.prompt is not None and self.completion is not None

    @property
    def free(self) -> bool:
        return self.prompt == 0 and self.completion == 0 and self.request == 0

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> float | None:
        if self.prompt is None or self.completion is None:
            return None
        return prompt_tokens * self.prompt + max_tokens * self.completion + self.request


class KeyInfo(msgspec.Struct, frozen=True):
    label: str = ""
    limit: float | None = None
    limit_remaining: float | None = None
    usage: float = 0.0
    usage_daily: float = 0.0
    usage_weekly: float = 0.0
    usage_monthly: float = 0.0


class GenerationCost(msgspec.Struct, frozen=True):
    id: str
    cost_usd: float
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return None if price < 0 else price


def parse_prices(body: Any) -> dict[str, ModelPrice]:
    out: dict[str, ModelPrice] = {}
    data = body.get("data") if isinstance(body, dict) else None
    for m in data if isinstance(data, list) else []:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            continue
        raw = m.get("pricing")
        pricing: dict[str, Any] = raw if isinstance(raw, dict) else {}
        request = _price(pricing.get("request", "0"))
        out[m["id"]] = ModelPrice(
            model=m["id"],
            prompt=_price(pricing.get("prompt")),
            completion=_price(pricing.get("completion")),
            request=request if request is not None else 0.0,
            context_length=int(m.get("context_length") or 0),
        )
    return out


class OpenRouterClient(OpenAICompatClient):
    def __init__(self, api_key: str, base_url: str = BASE_URL, label: str = "") -> None:
        super().__init__(base_url, api_key, ATTRIBUTION, name=f"OpenRouter[{label}]")
        self.label = label

    async def prices(self) -> dict[str, ModelPrice]:
        return parse_prices(await self.get_json("/models"))

    async def key_info(self) -> KeyInfo:
        body = await self.get_json("/key")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise Rejected(f"{self.name} /key: unexpected answer")
        return msgspec.convert(
            {k: v for k, v in data.items() if k in KeyInfo.__struct_fields__}, KeyInfo
        )

    async def generation_cost(
        self, generation_id: str, attempts: int = 6, delay: float = 0.5
    ) -> GenerationCost | None:
        """What a generation cost, asked after the fact. OpenRouter answers 404 for a short
        while after a generation ends: retry with backoff; None if it never says."""
        for attempt in range(attempts):
            try:
                body = await self.get_json("/generation", {"id": generation_id})
            except Rejected:  # 404 while the generation is being recorded
                await asyncio.sleep(delay * (2**attempt))
                continue
            except (Transient, BackendError) as error:
                log.info("openrouter.generation_lookup_failed error=%s", error)
                await asyncio.sleep(delay * (2**attempt))
                continue
            data = body.get("data") if isinstance(body, dict) else None
            if isinstance(data, dict) and isinstance(data.get("total_cost"), int | float):
                return GenerationCost(
                    id=generation_id,
                    cost_usd=float(data["total_cost"]),
                    model=str(data.get("model") or ""),
                    prompt_tokens=int(data.get("tokens_prompt") or 0),
                    completion_tokens=int(data.get("tokens_completion") or 0),
                )
            await asyncio.sleep(delay * (2**attempt))
        return None


def provider_preferences(allow_data_collection: bool) -> dict[str, Any]:
    """OpenRouter's `provider` object: no provider that may train on prompts, by default."""
    return {"provider": {"data_collection": "allow" if allow_data_collection else "deny"}}
