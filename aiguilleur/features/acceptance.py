"""What became of each suggestion shown: accepted, partly accepted, or dismissed.

A suggestion is followed from the moment it is shown until the next one is shown in its
document (or the document closes, or the session ends). What became of it is read from
the document itself: how many of its characters stand typed where it was shown, however
they got there (Tab, a word or a line taken with the editor's keys, typing it through).
An editor may also say so (`aiguilleur.accepted`, the command each item carries, which
VS Code and Neovim run when the user accepts it). Outcomes go to an `Outcomes` sink (the
ledger's database, remote/acceptance.py), per day, route and model; nothing of them is
sent anywhere. The work per keystroke is a dictionary lookup and a string comparison.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

import msgspec

from aiguilleur.features.needs import Outcomes
from aiguilleur.types import Outcome, SuggestionOutcome

# Characters before a suggestion kept to recognise its place later: an edit above it
# moves it, and its outcome is then only what the editor reported.
_ANCHOR_CHARS = 32


class _Open(msgspec.Struct):
    id: int
    start: int  # str offset of the cursor it was shown at
    anchor: str  # the text just before it
    after: str  # the text just after it, when it was shown
    text: str
    route: str
    model: str
    ts: float
    reported: int = 0  # characters the editor said were accepted
    rest: int = 0  # characters of it still shown (the rest, as the user types it through)


class Acceptance:
    """The suggestions of one session, followed until their outcome is known."""

    def __init__(self, outcomes: Outcomes | None) -> None:
        self._outcomes = outcomes
        self._open: dict[str, _Open] = {}  # per document, the suggestion last shown
        # Each such document's text as last changed: the editor may close it after the
        # server's copy is gone.
        self._last_text: dict[str, str] = {}
        # Ids are per process, so that one daemon's sessions never share one.
        self._ids = itertools.count(os.getpid() % 1000 * 1_000_000 + 1)

    def shown(
        self,
        uri: str,
        text: str,
        offset: int,
        suggestion: str,
        route: str,
        model: str,
        continued: bool,
    ) -> int:
        """`suggestion` is shown at `offset` of `text`; its id (the one the editor reports
        back). `continued`: what is left of the one shown before, as the user types it
        through, which keeps its id."""
        before = self._open.get(uri)
        if continued and before is not None and before.text.endswith(suggestion):
            typed = len(before.text) - len(suggestion)
            if offset - before.start == typed:
                before.rest = len(suggestion)
                return before.id
        if before is not None:
            self._close(before, text)
            self._last_text.pop(uri, None)
        anchor = text[max(0, offset - _ANCHOR_CHARS) : offset]
        after = text[offset : offset + _ANCHOR_CHARS]
        opened = _Open(
            next(self._ids), offset, anchor, after, suggestion, route, model, time.time()
        )
        opened.rest = len(suggestion)
        self._open[uri] = opened
        return opened.id

    def changed(self, uri: str, text: str) -> None:
        """The document as the editor changed it (kept only while a suggestion of it is
        followed: a reference, no copy)."""
        if uri in self._open:
            self._last_text[uri] = text

    def reported(self, suggestion_id: int, chars: int | None) -> bool:
        """The editor says suggestion `suggestion_id` was accepted (`chars` of what it
        showed last, or all); whether it is one of this session's."""
        for opened in self._open.values():
            if opened.id == suggestion_id:
                typed = len(opened.text) - opened.rest  # before the part the editor showed
                n = opened.rest if chars is None else max(0, min(chars, opened.rest))
                opened.reported = max(opened.reported, typed + n)
                return True
        return False

    def close(self, uri: str, text: str | None) -> None:
        """The document is closed (`text`: as it is now, if known; else as it last
        changed)."""
        last = self._last_text.pop(uri, None)
        opened = self._open.pop(uri, None)
        if opened is not None:
            self._close(opened, text if text is not None else last)

    def close_all(self, text_of: Callable[[str], str | None]) -> None:
        """The session ends: `text_of` gives each document as it is now."""
        for uri in list(self._open):
            self.close(uri, text_of(uri))

    def _close(self, opened: _Open, text: str | None) -> None:
        typed = 0
        start, n = opened.start, len(opened.text)
        if text is not None and text[max(0, start - len(opened.anchor)) : start] == opened.anchor:
            typed = _typed(text[start : start + n + len(opened.after)], opened.text, opened.after)
        chars = max(typed, opened.reported)
        outcome = (
            Outcome.ACCEPTED if chars >= n else Outcome.PARTIAL if chars else Outcome.DISMISSED
        )
        if self._outcomes is not None:
            self._outcomes.record(
                SuggestionOutcome(opened.ts, opened.route, opened.model, outcome, n, chars)
            )


def _typed(there: str, suggestion: str, after: str) -> int:
    """How much of `suggestion` stands typed at the start of `there` (the document from
    where it was shown), `after` having followed that place then: the longest start of
    the suggestion that the old text after it follows; else (the user typed on) its start
    that the document has, unless the text that was already there explains it."""
    k = _common_prefix(there, suggestion)
    for taken in range(k, -1, -1):
        if there[taken:].startswith(after):
            return taken
    return 0 if after.startswith(suggestion[:k]) else k


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
