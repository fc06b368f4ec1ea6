"""`aiguilleur cache stats|clear`: what the KV state store holds on disk, and emptying it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiguilleur.cache.kv import clear_disk, summarize_disk
from aiguilleur.config.loading import ConfigLayers, cache_dir


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def kv_dir() -> tuple[Path, int, int]:
    config = ConfigLayers(Path.cwd()).load().config
    return cache_dir(config) / "kv", config.cache.kv_ram_mb, config.cache.kv_disk_mb


def cache_stats() -> int:
    directory, ram_mb, disk_mb = kv_dir()
    try:
        summaries, counters, volume = summarize_disk(directory)
    except (OSError, sqlite3.Error) as error:
        print(f"cannot read the KV cache in {directory}: {error}")
        return 1
    print(f"KV state store: {directory}")
    print(
        f"  limits: RAM {ram_mb} MB per server, disk {disk_mb} MB ([cache] kv_ram_mb, kv_disk_mb)"
    )
    print(f"  on disk: {_mb(volume)}")
    if not summaries:
        print("  no states stored yet")
    for s in summaries:
        per_token = s.bytes / s.tokens if s.tokens else 0
        print(
            f"  {s.namespace}: {s.entries} states, {_mb(s.bytes)}, {s.tokens} tokens "
            f"({per_token / 1024:.1f} KiB per token)"
        )
    lookups = counters["hits_ram"] + counters["hits_disk"] + counters["misses"]

    def rate(n: int) -> str:
        return f"{n} ({100 * n / lookups:.0f}%)" if lookups else str(n)

    print("  since the store was created (all servers):")
    print(f"    restores from RAM: {rate(counters['hits_ram'])}")
    print(f"    restores from disk: {rate(counters['hits_disk'])}")
    print(f"    misses (gone or evicted): {rate(counters['misses'])}")
    print(f"    states saved: {counters['stores']}; discarded as corrupt: {counters['discarded']}")
    return 0


def cache_clear() -> int:
    directory, _, _ = kv_dir()
    try:
        n = clear_disk(directory)
    except (OSError, sqlite3.Error) as error:
        print(f"cannot clear the KV cache in {directory}: {error}")
        return 1
    print(f"removed {n} KV states from {directory}")
    print("running servers keep the states they hold in memory until they exit")
    return 0
