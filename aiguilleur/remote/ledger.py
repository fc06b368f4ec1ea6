"""Spend ledger: every paid request, and the reservations that keep budgets unbreakable.

SQLite in WAL mode, one row per request. Before a paid request is sent, `reserve` checks
the key's budgets and inserts a reservation for the worst case in one `BEGIN IMMEDIATE`
transaction: SQLite's write lock serialises reservations across threads and processes,
so concurrent requests (or two servers on one machine) cannot together pass a budget.
After the answer, `settle` replaces the reservation with the real cost. A reservation
whose outcome is never known (a cut connection, a killed process) stays counted at its
worst case. Amounts are integer nano-dollars, so sums are exact.

Nothing here knows what a key is worth or where its secret lives: rows carry only the
key's label.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import msgspec

from aiguilleur.errors import BudgetRefused

NANO = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    key_label TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    model_used TEXT NOT NULL DEFAULT '',
    feature TEXT NOT NULL,
    status TEXT NOT NULL,
    reserved_nusd INTEGER NOT NULL DEFAULT 0,
    cost_nusd INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    generation_id TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    counted_tokens INTEGER NOT NULL DEFAULT 0,
    estimated_nusd INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_label, ts);
CREATE UNIQUE INDEX IF NOT EXISTS requests_generation
    ON requests (generation_id) WHERE generation_id != '';
"""
# Columns added since the first schema, for a ledger written by an older version.
_ADDED = {
    "counted_tokens": "INTEGER NOT NULL DEFAULT 0",  # the prompt by estimate.count_tokens
    "estimated_nusd": "INTEGER NOT NULL DEFAULT 0",  # what the user was told it would cost
}
# Learned figures come from this many of the latest settled requests of a model.
LEARN_FROM = 50
# Requests left unsettled this recently are asked about again at each start.
ORPHANS_DAYS = 7


class Status(StrEnum):
    RESERVED = "reserved"  # sent or about to be; counted at its worst case
    SETTLED = "settled"  # real cost known
    UNKNOWN = "unknown"  # outcome never learnt: counted at its worst case for good
    FAILED = "failed"  # nothing was charged (refused before any generation)
    CACHED = "cached"  # answered from the response cache: free


# What a row costs against a budget, in nano-dollars.
_CHARGE = (
    "CASE status WHEN 'settled' THEN cost_nusd "
    "WHEN 'reserved' THEN reserved_nusd WHEN 'unknown' THEN reserved_nusd ELSE 0 END"
)


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits in USD over UTC periods (weeks start on Monday, as on OpenRouter)."""

    daily: float | None = None
    weekly: float | None = None
    monthly: float | None = None
    total: float | None = None

    def limits(self) -> list[tuple[str, float]]:
        return [
            (name, value)
            for name in ("daily", "weekly", "monthly", "total")
            if (value := getattr(self, name)) is not None
        ]


class Reservation(msgspec.Struct, frozen=True):
    id: int
    key_label: str
    reserved_usd: float


class Room(msgspec.Struct, frozen=True):
    """What a key may still reserve, in USD, under its tightest limit: `now`, and once the
    requests in flight have settled at no cost (`after_in_flight`). None: no limit."""

    now: float | None
    after_in_flight: float | None


class Learned(msgspec.Struct, frozen=True):
    """What past settles of a model say (None where there were none): the median of the
    prompt tokens billed per token counted here, and the median length of an answer for
    one feature."""

    prompt_ratio: float | None
    completion_tokens: int | None


class UsageRow(msgspec.Struct, frozen=True):
    day: str
    key_label: str
    model: str
    feature: str
    requests: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    pending_usd: float  # reserved or unknown: counted against budgets


def to_nano(usd: float) -> int:
    # Round up: a reservation must never be smaller than the worst case it stands for.
    return math.ceil(round(usd * NANO, 3))


def limit_nano(usd: float) -> int:
    # Round down: a limit must never be larger than the one the user wrote.
    return math.floor(round(usd * NANO, 3))


def period_start(period: str, now: float) -> float:
    """Start (UTC epoch seconds) of the period containing `now`."""
    if period == "total":
        return 0.0
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        day -= dt.timedelta(days=day.weekday())
    elif period == "monthly":
        day = day.replace(day=1)
    elif period != "daily":
        raise ValueError(f"unknown budget period {period!r}")
    return day.timestamp()


class SpendLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db()
        db.executescript(_SCHEMA)  # idempotent; executescript commits by itself
        have = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        for column, kind in _ADDED.items():
            if column not in have:
                try:
                    db.execute(f"ALTER TABLE requests ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as error:
                    if "duplicate column" not in str(error):  # not another process's doing
                        raise

    # -- connections --------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a settled row survives a power cut as well as a kill -9.
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # the write lock, before reading what was spent
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- budgets ------------------------------------------------------------------------

    def _spent_nano(self, db: sqlite3.Connection, key: str, since: float) -> int:
        row = db.execute(
            f"SELECT COALESCE(SUM({_CHARGE}), 0) FROM requests WHERE key_label = ? AND ts >= ?",
            (key, since),
        ).fetchone()
        return int(row[0])

    def _in_flight_nano(self, db: sqlite3.Connection, key: str, since: float) -> int:
        """What reservations of requests not yet settled hold (outcomes never learnt,
        `unknown`, are spent for good and not counted here)."""
        row = db.execute(
            "SELECT COALESCE(SUM(reserved_nusd), 0) FROM requests "
            "WHERE key_label = ? AND ts >= ? AND status = 'reserved'",
            (key, since),
        ).fetchone()
        return int(row[0])

    def _pending_nano(self, db: sqlite3.Connection, key: str) -> int:
        """What is reserved and not yet known to be settled, of any period: what
        OpenRouter's remaining limit must cover besides a new request."""
        row = db.execute(
            "SELECT COALESCE(SUM(reserved_nusd), 0) FROM requests "
            "WHERE key_label = ? AND status IN ('reserved', 'unknown')",
            (key,),
        ).fetchone()
        return int(row[0])

    def spent(self, key: str, period: str, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return self._spent_nano(self._db(), key, period_start(period, now)) / NANO

    def reserve(
        self,
        key: str,
        worst_usd: float,
        budget: Budget,
        *,
        route: str,
        model: str,
        feature: str,
        remote_remaining_usd: float | None = None,
        now: float | None = None,
        counted_tokens: int = 0,
        estimated_usd: float = 0.0,
    ) -> Reservation:
        """Reserve the worst case, or raise BudgetRefused if any limit would be passed.

        `remote_remaining_usd` is what OpenRouter says the key has left (its own limit):
        the request must fit that too, minus what is reserved here and not yet settled."""
        now = time.time() if now is None else now
        asked = to_nano(worst_usd)
        with self._tx() as db:
            for period, limit in budget.limits():
                since = period_start(period, now)
                spent = self._spent_nano(db, key, since)
                if spent + asked > limit_nano(limit):
                    held = self._in_flight_nano(db, key, since)
                    raise BudgetRefused(key, period, limit, spent / NANO, asked / NANO, held / NANO)
            if remote_remaining_usd is not None:
                pending = self._pending_nano(db, key)
                if pending + asked > limit_nano(remote_remaining_usd):
                    raise BudgetRefused(
                        key,
                        "remaining (OpenRouter)",
                        remote_remaining_usd,
                        pending / NANO,
                        asked / NANO,
                        self._in_flight_nano(db, key, 0.0) / NANO,
                    )
            cur = db.execute(
                "INSERT INTO requests (ts, key_label, route, model, feature, status, "
                "reserved_nusd, pid, counted_tokens, estimated_nusd) "
                "VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?)",
                (
                    now,
                    key,
                    route,
                    model,
                    feature,
                    asked,
                    os.getpid(),
                    counted_tokens,
                    to_nano(estimated_usd),
                ),
            )
            rid = cur.lastrowid
        assert rid is not None
        return Reservation(rid, key, asked / NANO)

    def room(
        self,
        key: str,
        budget: Budget,
        *,
        remote_remaining_usd: float | None = None,
        now: float | None = None,
    ) -> Room:
        """What `reserve` would grant `key` now, and once its requests in flight settle."""
        now = time.time() if now is None else now
        db = self._db()
        free: list[tuple[int, int]] = []  # (now, after in flight), nano-dollars
        for period, limit in budget.limits():
            since = period_start(period, now)
            left = limit_nano(limit) - self._spent_nano(db, key, since)
            free.append((left, left + self._in_flight_nano(db, key, since)))
        if remote_remaining_usd is not None:
            pending = self._pending_nano(db, key)
            left = limit_nano(remote_remaining_usd) - pending
            free.append((left, left + self._in_flight_nano(db, key, 0.0)))
        if not free:
            return Room(None, None)
        return Room(max(0, min(n for n, _ in free)) / NANO, max(0, min(a for _, a in free)) / NANO)

    def learned(self, model: str, feature: str) -> Learned:
        db = self._db()
        ratios = [
            pt / counted
            for pt, counted in db.execute(
                "SELECT prompt_tokens, counted_tokens FROM requests WHERE model = ? AND "
                "status = 'settled' AND counted_tokens > 0 AND prompt_tokens > 0 "
                "ORDER BY id DESC LIMIT ?",
                (model, LEARN_FROM),
            )
        ]
        lengths = [
            int(n)
            for (n,) in db.execute(
                "SELECT completion_tokens FROM requests WHERE model = ? AND feature = ? AND "
                "status = 'settled' AND prompt_tokens > 0 ORDER BY id DESC LIMIT ?",
                (model, feature, LEARN_FROM),
            )
        ]
        return Learned(
            statistics.median(ratios) if ratios else None,
            math.ceil(statistics.median(lengths)) if lengths else None,
        )

    def settle(
        self,
        reservation: Reservation,
        cost_usd: float,
        *,
        model_used: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_tokens: int = 0,
        generation_id: str = "",
    ) -> None:
        """The real cost is known. Settling twice (or a generation id seen before) is a
        no-op: a retried settlement must not count a request twice."""
        with self._tx() as db:
            if (
                generation_id
                and db.execute(
                    "SELECT 1 FROM requests WHERE generation_id = ? AND id != ?",
                    (generation_id, reservation.id),
                ).fetchone()
            ):
                db.execute(
                    "UPDATE requests SET status = 'failed', note = 'duplicate generation' "
                    "WHERE id = ? AND status = 'reserved'",
                    (reservation.id,),
                )
                return
            db.execute(
                "UPDATE requests SET status = 'settled', cost_nusd = ?, model_used = ?, "
                "prompt_tokens = ?, completion_tokens = ?, cached_tokens = ?, "
                "generation_id = ? WHERE id = ? AND status IN ('reserved', 'unknown')",
                (
                    to_nano(max(0.0, cost_usd)),  # a negative report never refunds a budget
                    model_used,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                    generation_id,
                    reservation.id,
                ),
            )

    def release(self, reservation: Reservation, note: str) -> None:
        """Nothing was charged (refused before generating): the reservation is freed."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET status = 'failed', note = ? "
                "WHERE id = ? AND status = 'reserved'",
                (note[:200], reservation.id),
            )

    def unknown(self, reservation: Reservation, generation_id: str, note: str) -> None:
        """The cost could not be learnt: the worst case stays spent."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET status = 'unknown', note = ?, generation_id = "
                "CASE WHEN ? != '' THEN ? ELSE generation_id END "
                "WHERE id = ? AND status IN ('reserved', 'unknown')",
                (note[:200], generation_id, generation_id, reservation.id),
            )

    def note_generation(self, reservation: Reservation, generation_id: str) -> None:
        """The request's generation id, as soon as the server names it: should this
        process end before the answer does, the next one asks what it cost."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET generation_id = ? "
                "WHERE id = ? AND status = 'reserved' AND generation_id = '' "
                "AND NOT EXISTS (SELECT 1 FROM requests WHERE generation_id = ?)",
                (generation_id, reservation.id, generation_id),
            )

    def orphaned_generations(
        self, key: str, now: float | None = None
    ) -> list[tuple[Reservation, str]]:
        """Requests of `key` of the last ORPHANS_DAYS days whose process ended (or whose
        caller left) before their answer did, and whose generation id is known: their
        cost can still be asked (a lookup that fails for good changes the note)."""
        since = (time.time() if now is None else now) - ORPHANS_DAYS * 86_400
        rows = self._db().execute(
            "SELECT id, reserved_nusd, generation_id FROM requests WHERE key_label = ? AND "
            "status = 'unknown' AND note IN ('process ended', 'cancelled') AND "
            "generation_id != '' AND ts >= ?",
            (key, since),
        )
        return [(Reservation(rid, key, nusd / NANO), gid) for rid, nusd, gid in rows]

    def cache_hit(self, key: str, *, route: str, model: str, feature: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO requests (ts, key_label, route, model, model_used, feature, "
                "status, pid) VALUES (?, ?, ?, ?, ?, ?, 'cached', ?)",
                (time.time(), key, route, model, model, feature, os.getpid()),
            )

    def orphans(self) -> int:
        """Reservations left by processes that are gone: marked unknown (still counted at
        their worst case). Returns how many."""
        db = self._db()
        rows = db.execute("SELECT DISTINCT pid FROM requests WHERE status = 'reserved'").fetchall()
        dead = [pid for (pid,) in rows if pid != os.getpid() and not _alive(pid)]
        if not dead:
            return 0
        with self._tx() as db:
            marks = ",".join("?" * len(dead))
            cur = db.execute(
                f"UPDATE requests SET status = 'unknown', note = 'process ended' "
                f"WHERE status = 'reserved' AND pid IN ({marks})",
                dead,
            )
            return cur.rowcount

    # -- reading --------------------------------------------------------------------------

    def usage(self, since: float = 0.0) -> list[UsageRow]:
        rows = (
            self._db()
            .execute(
                "SELECT date(ts, 'unixepoch') AS day, key_label, "
                "CASE model_used WHEN '' THEN model ELSE model_used END AS m, feature, "
                "COUNT(*), SUM(status = 'cached'), SUM(prompt_tokens), SUM(completion_tokens), "
                "SUM(cached_tokens), SUM(CASE status WHEN 'settled' THEN cost_nusd ELSE 0 END), "
                "SUM(CASE WHEN status IN ('reserved', 'unknown') THEN reserved_nusd ELSE 0 END) "
                "FROM requests WHERE ts >= ? AND status != 'failed' "
                "GROUP BY day, key_label, m, feature ORDER BY day, key_label, m, feature",
                (since,),
            )
            .fetchall()
        )
        return [
            UsageRow(
                day,
                key,
                model,
                feature,
                int(n),
                int(hits),
                int(pt),
                int(ct),
                int(cached),
                cost / NANO,
                pending / NANO,
            )
            for day, key, model, feature, n, hits, pt, ct, cached, cost, pending in rows
        ]

    def completion_spend(self, since: float = 0.0) -> dict[tuple[str, str, str], float]:
        """What completions cost per (UTC day, route, model that answered), settled or
        still held."""
        rows = self._db().execute(
            f"SELECT date(ts, 'unixepoch'), route, "
            f"CASE model_used WHEN '' THEN model ELSE model_used END, SUM({_CHARGE}) "
            "FROM requests WHERE ts >= ? AND feature = 'completion' GROUP BY 1, 2, 3",
            (since,),
        )
        return {(day, route, model): nusd / NANO for day, route, model, nusd in rows}

    def count(self, status: Status) -> int:
        row = (
            self._db()
            .execute("SELECT COUNT(*) FROM requests WHERE status = ?", (status.value,))
            .fetchone()
        )
        return int(row[0])


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs. A zombie (killed, not yet reaped by its parent)
    answers signal 0 but will settle nothing any more: it counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all there is to go by
    # The state follows the command name, which is in parentheses and may hold any byte.
    return stat[stat.rfind(")") + 1 :].split()[:1] != ["Z"]
