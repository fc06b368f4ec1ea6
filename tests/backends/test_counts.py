"""The engine's counters, named once: a Count is a field of the tally and of the status."""

from __future__ import annotations

from aiguilleur.backends.counts import Count, EngineCounts
from aiguilleur.backends.llama import EngineStats


def test_every_count_is_a_field_of_the_tally_and_of_what_status_reports() -> None:
    assert {c.value for c in Count} == set(EngineCounts.__struct_fields__)
    assert set(EngineCounts.__struct_fields__) <= set(EngineStats.__struct_fields__)


def test_the_tally_adds_what_it_is_told() -> None:
    tally = EngineCounts()
    tally.add(Count.GENERATED, 3)
    tally.add(Count.GENERATED)
    tally.add(Count.RESTORE_MS, 1.5)
    assert (tally.generated_tokens, tally.restore_ms, tally.completed) == (4, 1.5, 0)
