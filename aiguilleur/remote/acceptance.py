"""What the suggestions of each route and model became, in the ledger's database.

Outcomes (features/acceptance.py) are counted per UTC day, route and model, in a table of
the spend ledger's SQLite file, beside what each route cost, so that `aiguilleur usage`
can say what an accepted suggestion costs. They are kept in memory and written in one
transaction every FLUSH_EVERY_S seconds or FLUSH_AT outcomes (off the event loop), and at
shutdown: a kill -9 loses at most those seconds of counts, never money. Nothing here
leaves the machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec

from aiguilleur.types import Outcome, SuggestionOutcome

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 10.0
FLUSH_AT = 50
# Kept while the database cannot be written, at most (the oldest go first).
MAX_PENDING = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acceptance (
    day TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    partial INTEGER NOT NULL DEFAULT 0,
    shown_chars INTEGER NOT NULL DEFAULT 0,
    accepted_chars INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, route, model)
);
"""


class AcceptanceRow(msgspec.Struct, frozen=True):
    day: str
    route: str
    model: str
    shown: int
    accepted: int  # taken whole
    partial: int  # a part taken (a word, a line, the start typed through)
    shown_chars: int
    accepted_chars: int


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


class AcceptanceLog:
    """The outcomes of every session of a process, on their way to the ledger's file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[SuggestionOutcome] = []
        self._lock = threading.Lock()  # the pending list
        self._writing = threading.Lock()  # one flush at a time
        self._last = time.monotonic()

    def record(self, outcome: SuggestionOutcome) -> None:
        """Keep `outcome`; write what is kept once enough is, in a thread."""
        with self._lock:
            self._pending.append(outcome)
            due = len(self._pending) >= FLUSH_AT or time.monotonic() - self._last > FLUSH_EVERY_S
        if due and not self._writing.locked():
            threading.Thread(target=self.flush, name="acceptance-flush", daemon=True).start()

    def flush(self) -> None:
        """Write what is kept (blocking: call it off the event loop). A database that
        cannot be written keeps the counts for the next flush."""
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, []
                self._last = time.monotonic()
            if not pending:
                return
            counts: Counter[tuple[str, str, str, str]] = Counter()
            for o in pending:
                key = (_day(o.ts), o.route, o.model)
                counts[(*key, "shown")] += 1
                counts[(*key, "shown_chars")] += o.shown_chars
                counts[(*key, "accepted_chars")] += o.accepted_chars
                if o.outcome is Outcome.ACCEPTED:
                    counts[(*key, "accepted")] += 1
                elif o.outcome is Outcome.PARTIAL:
                    counts[(*key, "partial")] += 1
            try:
                self._write(counts)
            except (sqlite3.Error, OSError) as error:
                log.warning("acceptance.flush_failed error=%s", error)
                with self._lock:
                    self._pending[:0] = pending
                    del self._pending[:-MAX_PENDING]

    def _write(self, counts: Counter[tuple[str, str, str, str]]) -> None:
        rows: dict[tuple[str, str, str], dict[str, int]] = {}
        for (day, route, model, column), n in counts.items():
            rows.setdefault((day, route, model), {})[column] = n
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            for (day, route, model), c in rows.items():
                db.execute(
                    "INSERT INTO acceptance (day, route, model, shown, accepted, partial, "
                    "shown_chars, accepted_chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (day, route, model) DO UPDATE SET "
                    "shown = shown + excluded.shown, accepted = accepted + excluded.accepted, "
                    "partial = partial + excluded.partial, "
                    "shown_chars = shown_chars + excluded.shown_chars, "
                    "accepted_chars = accepted_chars + excluded.accepted_chars",
                    (
                        day,
                        route,
                        model,
                        c.get("shown", 0),
                        c.get("accepted", 0),
                        c.get("partial", 0),
                        c.get("shown_chars", 0),
                        c.get("accepted_chars", 0),
                    ),
                )
            db.execute("COMMIT")
        finally:
            db.close()


def acceptance_rows(path: Path, since_day: str = "") -> list[AcceptanceRow]:
    """The counts from `since_day` (YYYY-MM-DD, UTC) on, oldest first."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30.0)
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # no table yet: nothing counted
            found = db.execute(
                "SELECT day, route, model, shown, accepted, partial, shown_chars, "
                "accepted_chars FROM acceptance WHERE day >= ? ORDER BY day, route, model",
                (since_day,),
            ).fetchall()
            return [AcceptanceRow(*row) for row in found]
        return []
    finally:
        db.close()
