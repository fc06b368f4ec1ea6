"""The KV state store on its own: lookup, tiers, eviction, and every way a cache goes bad."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiguilleur.cache.kv import BLOCK, KVStateStore, clear_disk, summarize_disk

NS = "model-a.llama-0.3.36"


def seq(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def payload(n: int, fill: int = 7) -> bytes:
    return bytes([fill]) * n


def store(
    directory: Path | None, ram: int = 10 << 20, disk: int = 100 << 20, **kw: object
) -> KVStateStore:
    return KVStateStore(NS, directory, ram, disk, **kw)  # type: ignore[arg-type]


def test_lookup_finds_the_longest_shared_prefix(tmp_path: Path) -> None:
    s = store(tmp_path)
    base = seq(0, 300)
    s.put(base, payload(1000, 1))
    s.put(base[:150] + seq(10_000, 200), payload(1000, 2))

    m = s.lookup(base[:290] + [99_999] * 40)
    assert m is not None and m.matched == 290 and m.n_tokens == 300
    m = s.lookup(base[:170] + seq(10_020, 100))
    assert m is not None and m.matched == 170  # the first entry shares more than the second
    m = s.lookup(base[:150] + seq(10_000, 190))
    assert m is not None and m.matched == 340 and m.n_tokens == 350
    assert s.lookup(seq(50_000, 500)) is None
    assert s.lookup(base[: BLOCK - 1]) is None  # less than a block: not worth a restore
    state = s.load(s.lookup(base) or pytest.fail("no match"))
    assert state is not None and state.tokens == base and state.data == payload(1000, 1)
    s.close()


def test_ram_tier_stays_within_its_bound_and_falls_back_to_disk(tmp_path: Path) -> None:
    s = store(tmp_path, ram=3 * 4096)
    keys = [seq(i * 1000, 128) for i in range(6)]
    for i, k in enumerate(keys):
        s.put(k, payload(3000, i))
    st = s.stats()
    assert st.ram_bytes <= 3 * 4096 and st.ram_entries == 3
    assert s.flush()
    m = s.lookup(keys[0])
    assert m is not None and m.tier == "disk"
    state = s.load(m)
    assert state is not None and state.data == payload(3000, 0)
    assert s.stats().hits_disk == 1
    s.close()


def test_without_disk_an_entry_evicted_from_ram_is_gone(tmp_path: Path) -> None:
    s = store(None, ram=2 * 4096)
    keys = [seq(i * 1000, 128) for i in range(3)]
    for k in keys:
        s.put(k, payload(3000))
    assert s.lookup(keys[0]) is None
    assert s.lookup(keys[2]) is not None


def test_states_survive_a_restart(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(seq(0, 2000), payload(50_000, 3))
    s.close()

    again = store(tmp_path)
    m = again.lookup([*seq(0, 1990), 5, 5, 5])
    assert m is not None and m.tier == "disk" and m.matched == 1990
    state = again.load(m)
    assert state is not None and state.data == payload(50_000, 3)
    again.close()


def test_disk_tier_evicts_least_recently_used(tmp_path: Path) -> None:
    s = store(tmp_path, ram=1, disk=1 << 20)  # RAM too small: everything lives on disk
    for i in range(12):
        s.put(seq(i * 1000, 128), payload(200_000, i))
        assert s.flush()
    s.close()
    summaries, _, volume = summarize_disk(tmp_path)
    assert volume <= (1 << 20) + 200_000  # diskcache culls after the write that overflows
    again = store(tmp_path, ram=1, disk=1 << 20)
    assert again.lookup(seq(11 * 1000, 128)) is not None  # the newest stayed
    assert again.lookup(seq(0, 128)) is None  # the oldest went
    assert summaries[0].entries < 12
    again.close()


def _data_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*.val")]


def test_a_corrupted_state_is_discarded_not_loaded(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(seq(0, 256), payload(100_000, 9))
    s.close()
    [blob] = _data_files(tmp_path)
    raw = bytearray(blob.read_bytes())
    raw[5000] ^= 0xFF
    blob.write_bytes(bytes(raw))

    again = store(tmp_path)
    m = again.lookup(seq(0, 256))
    assert m is not None
    assert again.load(m) is None
    assert again.stats().discarded == 1
    assert again.lookup(seq(0, 256)) is None
    again.close()


def test_states_of_another_model_or_version_are_ignored(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(seq(0, 256), payload(10_000))
    s.close()
    other = KVStateStore("model-b.llama-0.3.36", tmp_path, 1 << 20, 100 << 20)
    assert other.lookup(seq(0, 256)) is None
    other.close()
    same = store(tmp_path)
    assert same.lookup(seq(0, 256)) is not None
    same.close()


def test_an_unwritable_cache_dir_degrades_to_ram_with_one_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    problems: list[str] = []
    s = store(blocker / "kv", on_problem=problems.append)
    assert len(problems) == 1 and "memory only" in problems[0]
    s.put(seq(0, 128), payload(1000))
    m = s.lookup(seq(0, 128))
    assert m is not None and s.load(m) is not None
    assert s.stats().disk_problem is not None
    s.close()


def test_a_corrupted_database_is_moved_aside(tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    s = store(kv)
    s.put(seq(0, 128), payload(1000))
    s.close()
    for name in ("cache.db-wal", "cache.db-shm"):
        (kv / name).unlink(missing_ok=True)
    (kv / "cache.db").write_bytes(b"this is not a database" * 100)
    again = store(kv)
    assert again.disk_problem is None
    again.put(seq(0, 128), payload(1000))
    assert again.flush()
    assert any(p.name.startswith("kv.broken-") for p in tmp_path.iterdir())
    again.close()


WRITER = """
import sys, os
sys.path.insert(0, {root!r})
from aiguilleur.cache.kv import KVStateStore
s = KVStateStore("model-a.llama-0.3.36", __import__("pathlib").Path({kv!r}), 1, 10 << 30)
print("ready", flush=True)
s.put(list(range(128)), os.urandom(400 << 20))
s.flush(600)
"""


def test_kill_9_during_a_write_leaves_a_store_that_opens(tmp_path: Path) -> None:
    kv = tmp_path / "kv"
    first = store(kv)
    first.put(seq(5000, 128), payload(10_000, 4))
    first.close()
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=root, kv=str(kv))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    before = set(_data_files(kv))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in set(_data_files(kv)) - before):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    again = store(kv)
    assert again.disk_problem is None
    assert again.lookup(seq(0, 128)) is None  # the half-written state is not visible
    m = again.lookup(seq(5000, 128))
    assert m is not None and (state := again.load(m)) is not None
    assert state.data == payload(10_000, 4)
    again.put(seq(0, 128), payload(1000))
    assert again.flush()
    again.close()


FULL_DISK = """
import sys, os, resource, signal
sys.path.insert(0, {root!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from aiguilleur.cache.kv import KVStateStore
problems = []
s = KVStateStore("ns", __import__("pathlib").Path({kv!r}), 64 << 20, 10 << 30, problems.append)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file may grow past 1 MiB
s.put(list(range(128)), os.urandom(4 << 20))
s.flush(60)
s.put(list(range(1000, 1128)), os.urandom(4 << 20))
s.flush(60)
m = s.lookup(list(range(128)))
print(len(problems), s.stats().disk_problem is not None, m is not None and s.load(m) is not None)
"""


def test_a_full_disk_degrades_to_ram_with_one_message(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK.format(root=root, kv=str(tmp_path / "kv"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True", "True"]


def test_summary_and_clear(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(seq(0, 256), payload(10_000))
    s.put(seq(9000, 128), payload(20_000))
    m = s.lookup(seq(0, 256))
    assert m is not None and s.load(m) is not None
    s.close()
    summaries, counters, volume = summarize_disk(tmp_path)
    assert [(x.namespace, x.entries, x.bytes, x.tokens) for x in summaries] == [
        (NS, 2, 30_000, 384)
    ]
    assert counters["stores"] == 2 and counters["hits_ram"] == 1
    assert volume >= 30_000
    assert clear_disk(tmp_path) == 2
    assert summarize_disk(tmp_path)[0] == []
    assert os.path.isdir(tmp_path)


def test_a_state_that_extends_a_stored_one_replaces_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    typing = seq(0, 1000)
    s.put([*typing, *seq(90_000, 150)], payload(1000, 1))  # cursor, then suffix tokens
    s.put([*typing, 5, *seq(90_000, 150)], payload(1000, 2))  # one keystroke later
    other = [*seq(0, 300), *seq(70_000, 700)]  # same file start, elsewhere: kept
    s.put(other, payload(1000, 3))
    st = s.stats()
    assert st.ram_entries == 2 and st.stores == 3
    m = s.lookup([*typing, 5])
    assert m is not None and m.matched == 1001
    assert s.flush()
    s.close()
    summaries, _, _ = summarize_disk(tmp_path)
    assert summaries[0].entries == 2  # the replaced state was deleted on disk too


def test_states_wait_for_a_slow_disk_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk slower than the saves: the states queued for it stay within a bound, the
    others are kept in RAM only, and all that was queued is written once the disk
    catches up."""
    import threading

    from aiguilleur.cache import kv_disk

    monkeypatch.setattr(kv_disk, "MAX_PENDING_BYTES", 2 * 3000)
    disk_free = threading.Event()
    write = kv_disk.KVDisk._write

    def slow_write(self: kv_disk.KVDisk, op: str, arg: object) -> None:
        disk_free.wait(30)
        write(self, op, arg)

    monkeypatch.setattr(kv_disk.KVDisk, "_write", slow_write)
    s = store(tmp_path, ram=10 << 20)
    keys = [seq(i * 1000, 128) for i in range(5)]
    for i, k in enumerate(keys):
        s.put(k, payload(3000, i))
        assert s.stats().disk_pending_bytes <= 2 * 3000
    st = s.stats()
    assert st.disk_skipped == 3 and st.ram_entries == 5
    disk_free.set()
    assert s.flush()
    assert s.stats().disk_pending_bytes == 0
    s.close()
    again = store(tmp_path)
    assert again.stats().disk_entries == 2  # the two that were queued, and no others
    again.close()
