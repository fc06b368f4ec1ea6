"""What the engine counts, named once: each Count is a field of EngineCounts (the tally),
which `aiguilleur/status` reports as part of EngineStats."""

from __future__ import annotations

import enum

import msgspec


class Count(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    GENERATED = "generated_tokens"
    EVALUATED = "evaluated_tokens"
    RESTORED = "restored"
    SAVED = "saved"
    PREFILLED = "prefilled_tokens"
    # KV states moved into the context (restore: llama_state_seq_set_data) and out of
    # it (save: get_data plus the store's RAM copy; the disk write happens elsewhere).
    RESTORED_BYTES = "restored_bytes"
    RESTORE_MS = "restore_ms"
    SAVED_BYTES = "saved_bytes"
    SAVED_TOKENS = "saved_tokens"
    SAVE_MS = "save_ms"
    CHATS = "chats"
    CHAT_YIELDS = "chat_yields"  # times a chat answer stepped aside for a completion
    PREFETCHED = "prefetched"  # suggestions computed ahead (after the shown one is accepted)
    PREFETCH_YIELDS = "prefetch_yields"  # prefetches stopped for a request
    # Prefills paused and prefetches dropped because other programs needed the cores.
    BACKGROUND_PAUSED = "background_paused"


class EngineCounts(msgspec.Struct):
    """The tally, one field per Count (the engine adds under its lock)."""

    completed: int = 0
    cancelled: int = 0
    superseded: int = 0
    generated_tokens: int = 0
    evaluated_tokens: int = 0
    restored: int = 0
    saved: int = 0
    prefilled_tokens: int = 0
    restored_bytes: int = 0
    restore_ms: float = 0.0
    saved_bytes: int = 0
    saved_tokens: int = 0
    save_ms: float = 0.0
    chats: int = 0
    chat_yields: int = 0
    prefetched: int = 0
    prefetch_yields: int = 0
    background_paused: int = 0

    def add(self, count: Count, n: float = 1) -> None:
        setattr(self, count.value, getattr(self, count.value) + n)
