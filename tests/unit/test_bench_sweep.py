"""The e2e bench's search for the highest sustained rate: refining after its grid, and steps spoiled
by the hypervisor's steal."""

from __future__ import annotations

from bench.e2e_bench import best, refinement, spoiled


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


def test_a_step_discarded_for_steal_counts_neither_way():
    discarded = {"offered_per_s": 375, "sustained": False, "discarded": "steal 0.5 cores"}
    assert refinement([*steps((250, True), (500, False)), discarded]) == 375
    assert best([*steps((250, True)), {**discarded, "sustained": True}])["offered_per_s"] == 250


def test_only_a_failed_step_with_steal_is_spoiled():
    def step(ok: bool, steal: float) -> dict:
        return {"sustained": ok, "vm_cores": {"busy": 1.0, "steal": steal}}

    assert spoiled(step(False, 0.5))
    assert not spoiled(step(True, 0.5))
    assert not spoiled(step(False, 0.01))
