"""Change records' span arithmetic: what lies outside the kept partitions, what a range touches."""

from __future__ import annotations

from ibtasks.formats.disk_changes import outside, touches


def test_outside_gives_the_gaps_between_and_around_the_kept_spans_in_order() -> None:
    assert outside([(100, 50), (10, 20)], 200) == [(0, 10), (30, 70), (150, 50)]


def test_outside_of_nothing_kept_is_everything_and_of_everything_is_nothing() -> None:
    assert outside([], 4096) == [(0, 4096)]
    assert outside([(0, 4096)], 4096) == []
    assert outside([(0, 2048), (1024, 4096)], 4096) == []  # overlapping spans


def test_a_kept_span_past_the_end_leaves_no_negative_gap() -> None:
    assert outside([(3000, 5000)], 4096) == [(0, 3000)]


def test_touches_counts_overlap_only_not_adjacency() -> None:
    changed = [(4096, 4096)]
    assert touches(0, 4096, changed) is False  # ends where the change starts
    assert touches(8192, 10, changed) is False  # starts where it ends
    assert touches(8191, 1, changed) is True
    assert touches(0, 100_000, changed) is True  # contains it
    assert touches(5000, 1, []) is False
