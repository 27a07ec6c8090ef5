"""The e2e bench's search for the highest sustained rate: refining after its grid, and steps spoiled
by the hypervisor's steal."""

from __future__ import annotations

import asyncio

from bench.e2e_bench import best, refinement, spoiled, sweep


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
    def step(ok: bool, steal: float, peak: float = 0.0) -> dict:
        return {"sustained": ok, "vm_cores": {"busy": 1.0, "steal": steal, "steal_peak": peak}}

    assert spoiled(step(False, 0.5))
    assert spoiled(step(False, 0.08, peak=1.3))  # a burst the step's average hides
    assert not spoiled(step(True, 0.5, peak=1.3))
    assert not spoiled(step(False, 0.01, peak=0.12))


def run_sweep(outcomes: dict[int, list[tuple[bool, float]]]) -> list[tuple[int, bool, bool]]:
    """Sweep against scripted steps: per rate, (sustained, steal) of each measurement in turn."""

    async def measure_at(rate: int) -> dict:
        ok, steal = outcomes[rate].pop(0)
        return {
            "offered_per_s": rate,
            "achieved_per_s": rate,
            "sustained": ok,
            "vm_cores": {"busy": 1.0, "steal": steal, "steal_peak": steal},
        }

    found = asyncio.run(sweep(measure_at, settle=0))
    return [(s["offered_per_s"], s["sustained"], "discarded" in s) for s in found]


def test_a_spoiled_refinement_step_is_measured_again_within_the_same_budget():
    found = run_sweep(
        {
            25: [(False, 0.3), (True, 0.0)],  # the grid's first step spends one retry
            50: [(True, 0.0)],
            100: [(True, 0.0)],
            175: [(False, 0.0)],
            250: [(False, 0.0)],
            138: [(False, 0.4), (True, 0.0)],  # the refinement spends the other
            156: [(False, 0.5)],  # none left: it counts
        }
    )
    assert found == [
        (25, False, True),
        (25, True, False),
        (50, True, False),
        (100, True, False),
        (138, False, True),
        (138, True, False),
        (156, False, False),
        (175, False, False),
        (250, False, False),
    ]
