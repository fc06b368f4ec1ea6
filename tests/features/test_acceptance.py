"""What became of a suggestion, read from the document and from what the editor says."""

from __future__ import annotations

from aiguilleur.features.acceptance import Acceptance
from aiguilleur.types import Outcome, SuggestionOutcome

URI = "file:///w/m.py"
BEFORE = "def area(r):\n    return "
SUGGESTION = "3.14159 * r * r"


class Sink(list[SuggestionOutcome]):
    def record(self, outcome: SuggestionOutcome) -> None:
        self.append(outcome)


def shown(acc: Acceptance, text: str, offset: int, suggestion: str, continued: bool = False) -> int:
    return acc.shown(URI, text, offset, suggestion, "cloud", "vendor/coder", continued)


def test_typed_through_to_its_end_is_accepted_under_one_id() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    first = shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    typed = BEFORE + "3.14"
    # The rest, as the user types the start: the same suggestion, the same id.
    assert shown(acc, typed, len(typed), SUGGESTION[4:], continued=True) == first
    done = BEFORE + SUGGESTION + "\n"
    shown(acc, done, len(done), "print(area(2))")  # the next one closes it
    [outcome] = sink
    assert outcome.outcome is Outcome.ACCEPTED and outcome.accepted_chars == len(SUGGESTION)
    assert (outcome.route, outcome.model, outcome.shown_chars) == ("cloud", "vendor/coder", 15)


def test_a_word_taken_then_other_code_is_partial_and_other_code_is_dismissed() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    partly = BEFORE + "3.14159 ** 2"
    shown(acc, partly, len(partly), " * r")
    acc.close(URI, partly + " * r")
    assert [o.outcome for o in sink] == [Outcome.PARTIAL, Outcome.ACCEPTED]
    assert sink[0].accepted_chars == len("3.14159 *")
    sink.clear()
    shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    acc.close(URI, BEFORE + "math.pi * r ** 2")
    assert [(o.outcome, o.accepted_chars) for o in sink] == [(Outcome.DISMISSED, 0)]


def test_what_the_editor_reports_counts_even_when_the_text_moved() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    first = shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    assert acc.reported(first, 7)  # Neovim's word key: "3.14159"
    assert not acc.reported(first + 999, None)  # not one of this session's
    # A line added above moves it: the document no longer tells, the report does.
    acc.close(URI, "import math\n" + BEFORE + SUGGESTION)
    assert [(o.outcome, o.accepted_chars) for o in sink] == [(Outcome.PARTIAL, 7)]
    second = shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    acc.reported(second, None)  # VS Code ran the item's command: all of it
    acc.close_all(lambda uri: None)  # the session ends, the document unknown
    assert sink[-1].outcome is Outcome.ACCEPTED


def test_without_a_sink_nothing_is_kept_and_nothing_fails() -> None:
    acc = Acceptance(None)
    shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    acc.close(URI, BEFORE + SUGGESTION)


def test_text_that_was_already_after_the_cursor_is_not_counted_as_taken() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    text = "s = 'x' + na\nprint(add(1, 2))\n"
    at = text.index("\n")
    shown(acc, text, at, "me.upper()\nprint(s)")
    # Its first line taken with its line break; the next line was there before.
    acc.close(URI, text[:at] + "me.upper()\n" + text[at:])
    assert [(o.outcome, o.accepted_chars) for o in sink] == [(Outcome.PARTIAL, 11)]
    sink.clear()
    shown(acc, text, at, "\nprint(s)")  # the line break alone was already there
    acc.close(URI, text)
    assert [(o.outcome, o.accepted_chars) for o in sink] == [(Outcome.DISMISSED, 0)]


def test_a_document_closed_after_the_servers_copy_is_gone_is_read_as_it_last_changed() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    acc.changed(URI, BEFORE + SUGGESTION)  # Tab in the editor
    acc.close(URI, None)  # pygls dropped its copy before telling the server
    assert [o.outcome for o in sink] == [Outcome.ACCEPTED]


def test_a_part_reported_after_typing_through_counts_from_where_it_was_shown() -> None:
    sink = Sink()
    acc = Acceptance(sink)
    first = shown(acc, BEFORE, len(BEFORE), SUGGESTION)
    typed = BEFORE + "3.14"
    shown(acc, typed, len(typed), SUGGESTION[4:], continued=True)
    acc.reported(first, 5)  # "159 *" of the rest shown: 9 characters of the suggestion
    acc.close(URI, "import math\n" + typed)  # moved: only the report tells
    assert [(o.outcome, o.accepted_chars) for o in sink] == [(Outcome.PARTIAL, 9)]
