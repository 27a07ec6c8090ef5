"""The e2e bench's search for the highest sustained rate: its grid, then a refinement; steal is
recorded with each step and never re-measured."""

from __future__ import annotations

import asyncio

from bench.sweep import Plan, best, refinement, sweep


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


def test_best_is_the_highest_sustained_step():
    assert best(steps((25, True), (50, False), (100, True), (175, False)))["offered_per_s"] == 100
    assert best(steps((25, False))) is None


def run_sweep(outcomes: dict[int, tuple[bool, float]], plan: Plan) -> list[tuple]:
    """Sweep against scripted steps: per rate, (sustained, steal)."""
    measured: list[int] = []

    async def measure_at(rate: int) -> dict:
        measured.append(rate)
        ok, steal = outcomes[rate]
        return {
            "offered_per_s": rate,
            "achieved_per_s": rate,
            "sustained": ok,
            "vm_cores": {"busy": 1.0, "steal": steal, "steal_peak": steal},
        }

    found = asyncio.run(sweep(measure_at, plan))
    assert len(measured) == len(set(measured)), "a rate was measured twice"
    return [(s["offered_per_s"], s["sustained"], s["vm_cores"]["steal"]) for s in found]


def test_the_grid_stops_after_two_failures_then_refines_once_per_step():
    plan = Plan(rates=[25, 50, 100, 175, 250, 375], refine_steps=2, settle_seconds=0)
    outcomes = {
        25: (True, 0.0),
        50: (True, 0.0),
        100: (True, 0.0),
        175: (False, 0.0),
        250: (False, 0.0),
        138: (True, 0.0),
        156: (False, 0.0),
    }
    assert [rate for rate, _, _ in run_sweep(outcomes, plan)] == [25, 50, 100, 138, 156, 175, 250]


def test_a_failed_step_with_steal_counts_as_measured_and_keeps_its_steal():
    plan = Plan(rates=[25, 50, 100], refine_steps=0, settle_seconds=0)
    outcomes = {25: (True, 0.0), 50: (False, 0.9), 100: (True, 0.0)}
    assert run_sweep(outcomes, plan) == [(25, True, 0.0), (50, False, 0.9), (100, True, 0.0)]
