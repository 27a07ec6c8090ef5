"""The e2e bench's search for the highest sustained rate, after its grid."""

from __future__ import annotations

from bench.e2e_bench import refinement


def steps(*results: tuple[int, bool]) -> list[dict]:
    return [{"offered_per_s": rate, "sustained": ok} for rate, ok in results]


def test_the_next_rate_halves_the_gap_above_the_highest_sustained_one():
    assert refinement(steps((100, True), (250, True), (375, False), (500, False))) == 312
    assert refinement(steps((250, True), (375, False), (312, True))) == 344


def test_a_stall_below_does_not_move_the_search():
    assert refinement(steps((100, False), (250, True), (375, False))) == 312


def test_no_refinement_without_a_pair_or_once_close_enough():
    assert refinement(steps((25, False), (50, False))) is None
    assert refinement(steps((25, True), (50, True))) is None
    assert refinement(steps((250, True), (275, False))) is None
